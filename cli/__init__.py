"""The command-line interface (``cs-inventory``)."""

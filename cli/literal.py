"""Names are data: everything the CLI prints reaches the terminal as the characters it is.

VM, host, pool and cluster names are chosen by tenants and other people. Printed through Rich they
could be markup (``[link=…]``), emoji codes (``:thumbs_up:``) or, passed through untouched, terminal
control sequences (an ESC that recolours, clears the screen or writes the clipboard) and bidirectional
overrides that make text read backwards. ``LiteralConsole`` turns all of that off and shows control
and format characters (and lone surrogates) as visible escapes (``\\x1b``, ``\\u202e``), in tables, titles
and lines alike: one place, so no command can forget it.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

from rich.console import Console
from rich.text import Text

from inventory.normalise import printable

__all__ = ["EXIT_READER_GONE", "LiteralConsole", "printable", "reader_gone"]

EXIT_READER_GONE = 141  # as a Unix tool that SIGPIPE ends: 128 + 13


def reader_gone() -> NoReturn:
    """The reader of standard output went away (``| head``): nothing more is written, and nobody is told."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # what is still buffered goes nowhere, rather than fail again at exit
    raise SystemExit(EXIT_READER_GONE)


class LiteralConsole(Console):
    """A Rich console that renders every string literally: no markup, no emoji codes, no highlighting, and no
    control characters (see ``printable``). Table cells, titles and printed lines all pass through here."""

    def __init__(self, **options: Any) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, **options)

    def render_str(self, text: str, **options: Any) -> Text:
        options.update(markup=False, emoji=False, highlight=False)
        return super().render_str(printable(text), **options)

    def on_broken_pipe(self) -> None:  # Rich's own exits 1, which is this tool's "findings"
        reader_gone()

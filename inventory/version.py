"""The installed version of cs-inventory."""

from importlib.metadata import PackageNotFoundError, version

try:
    TOOL_VERSION = version("cs-inventory")
except PackageNotFoundError:  # running from a source tree that is not installed
    TOOL_VERSION = "0.1.0+source"

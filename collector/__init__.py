"""The Vantage collector: verifies signed uploads, stores them, aggregates them, serves researchers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vantagepoint")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

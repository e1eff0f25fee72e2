"""aioapollo: an asyncio-native client for the Apollo configuration center."""

from ._version import __version__

__all__ = ["__version__"]

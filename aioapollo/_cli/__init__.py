"""The ``aioapollo`` command line. Private: run it as ``aioapollo`` or ``python -m aioapollo``."""

from .main import main

__all__ = ["main"]

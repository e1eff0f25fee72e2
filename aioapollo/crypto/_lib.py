"""The one place that imports ``cryptography`` (an optional dependency)."""

from __future__ import annotations

from types import ModuleType

__all__ = ["MISSING_HINT", "require"]

MISSING_HINT = (
    "encrypted values need the cryptography package: pip install 'aioapollo-client[crypto]'"
)


def require() -> ModuleType:
    """``cryptography``, or an ImportError that says how to install it."""
    try:
        import cryptography
    except ImportError:
        raise ImportError(MISSING_HINT) from None
    return cryptography

"""Fernet values (``cryptography``'s MultiFernet): several keys, for rotation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._lib import require

__all__ = ["Fernet"]


class Fernet:
    """Encrypt with the first key, decrypt with any of them (cryptography's MultiFernet).

    Args:
        keys: One key or several (URL-safe Base64 of 32 bytes, as
            :meth:`generate_key` makes). To rotate: put the new key first, re-encrypt the
            values in the portal at leisure, then drop the old key.

    Keys are never shown: not in the repr, not in any error.
    """

    __slots__ = ("_count", "_multi")

    def __init__(self, keys: str | bytes | Iterable[str | bytes]) -> None:
        require()
        from cryptography.fernet import Fernet as _Key
        from cryptography.fernet import MultiFernet

        given = [keys] if isinstance(keys, str | bytes) else list(keys)
        parsed: list[Any] = []
        for position, key in enumerate(given, 1):
            raw = key.strip() if isinstance(key, str | bytes) else key
            if not raw:
                continue
            try:
                parsed.append(_Key(raw))
            except (ValueError, TypeError):
                raise ValueError(
                    f"Fernet key #{position} is not a Fernet key (URL-safe Base64 of 32 bytes; "
                    "make one with aioapollo.crypto.Fernet.generate_key())"
                ) from None
        if not parsed:
            raise ValueError("Fernet needs at least one key")
        self._multi = MultiFernet(parsed)
        self._count = len(parsed)

    def __repr__(self) -> str:
        return f"Fernet(keys={self._count})"

    @staticmethod
    def generate_key() -> str:
        """A new random key."""
        require()
        from cryptography.fernet import Fernet as _Key

        return _Key.generate_key().decode("ascii")

    def encrypt(self, text: str) -> str:
        """``text`` encrypted with the first key: the token that goes inside ``ENC(...)``."""
        return self._multi.encrypt(text.encode()).decode("ascii")

    def decrypt(self, text: str) -> str:
        """The plain text of a token (or of the whole ``ENC(...)``); :class:`ValueError`
        when no key decrypts it (the message never holds the token)."""
        from cryptography.fernet import InvalidToken

        text = text.strip()
        if text.startswith("ENC(") and text.endswith(")"):
            text = text[4:-1].strip()
        try:
            plain = self._multi.decrypt(text.encode())
        except (InvalidToken, ValueError, TypeError):
            raise ValueError("does not decrypt: no key matches, or the token is corrupt") from None
        try:
            return plain.decode()
        except UnicodeDecodeError:
            raise ValueError("does not decrypt: the result is not UTF-8 text") from None

    def rotate(self, text: str) -> str:
        """A token re-encrypted with the first key (its original time stamp kept)."""
        from cryptography.fernet import InvalidToken

        text = text.strip()
        if text.startswith("ENC(") and text.endswith(")"):
            text = text[4:-1].strip()
        try:
            return self._multi.rotate(text.encode()).decode("ascii")
        except InvalidToken:
            raise ValueError("does not decrypt: no key matches, or the token is corrupt") from None

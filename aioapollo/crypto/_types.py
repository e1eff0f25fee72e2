"""What ``decryptor=`` accepts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeAlias, runtime_checkable

__all__ = ["Decryptor", "DecryptorLike", "is_encrypted", "unwrap"]


@runtime_checkable
class Decryptor(Protocol):
    """Anything with a ``decrypt(text) -> str`` method, sync or ``async`` (a KMS, Vault's
    transit engine). ``text`` is what is inside ``ENC(...)``. A sync one is called in a
    worker thread, never on the event loop."""

    def decrypt(self, text: str, /) -> str | Awaitable[str]: ...


#: ``decryptor=``: a :class:`Decryptor`, or a plain function (sync or async) of the text.
DecryptorLike: TypeAlias = Decryptor | Callable[[str], str] | Callable[[str], Awaitable[str]]


def unwrap(value: str) -> str | None:
    """The text inside ``ENC(...)`` (surrounding blanks allowed, as jasypt allows them), or
    None when ``value`` is not an encrypted value."""
    if not value.endswith(")") and not value[-1:].isspace():
        return None  # the fast no: most values
    text = value.strip()
    if text.startswith("ENC(") and text.endswith(")"):
        return text[4:-1].strip()
    return None


def is_encrypted(value: str) -> bool:
    """Whether ``value`` has the ``ENC(...)`` form."""
    return unwrap(value) is not None

"""``decryptor=``: ``ENC(...)`` values decrypted on their way into the store.

Two halves, so that the store's one synchronous step stays a dict lookup:

* :meth:`Decryption.prepare` (a store *preparer*, awaited by
  :meth:`~aioapollo._core.store.NamespaceStore.deliver`) decrypts every ciphertext of a
  release that is not known yet: a sync decryptor in one worker thread per release (a
  jasypt key derivation per value must not hold up the event loop), an async one awaited,
  at most :data:`CONCURRENCY` at a time. If any fails, the release is refused as a whole
  (a user name and its password change together): :class:`DecryptionError` names the
  namespace and keys, the log and the hooks hear of it, and the namespace keeps its last
  good values.
* :meth:`Decryption.transform` (a store *transform*) swaps each ``ENC(...)`` value for its
  plain text from what ``prepare`` found. A release applied without ``prepare`` (a source
  that calls ``apply`` directly) is decrypted there, inline, by a sync decryptor; an async
  one cannot be, and the release is refused with a DecryptionError that says so.

The plain texts are cached per namespace and ciphertext, and the cache holds exactly the
ciphertexts of each namespace's latest release: bounded by what is in use, and an unchanged
value is never decrypted twice. Only the snapshot and the read view see plain text: the
record keeps the release as delivered, which is what the disk cache and the sharing socket
get, so every process decrypts for itself.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from .._exceptions import DecryptionError
from .._hooks import ErrorEvent, HookSet
from ..crypto._types import DecryptorLike, unwrap

if TYPE_CHECKING:
    from .store import NamespaceStore

__all__ = ["CONCURRENCY", "Decryption", "install"]

logger = logging.getLogger("aioapollo")

#: How many calls of an async decryptor run at once for one release.
CONCURRENCY = 16


def _resolve(decryptor: object) -> tuple[Callable[[str], Any], bool]:
    """The function to call and whether it is a coroutine function."""
    method = getattr(decryptor, "decrypt", None)
    fn = method if callable(method) else decryptor
    if not callable(fn):
        raise TypeError(
            "decryptor must have a decrypt(text) method or be a function of the text "
            "(sync or async), e.g. aioapollo.crypto.Jasypt(password)"
        )
    call = getattr(fn, "__call__", None)  # noqa: B004 - a class instance with async __call__
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)
    return cast(Callable[[str], Any], fn), is_async


def _builtin(decryptor: object) -> bool:
    from ..crypto import Fernet, Jasypt

    return isinstance(decryptor, Jasypt | Fernet)


class Decryption:
    """A client's decryptor, as a store preparer and transform (see the module docstring)."""

    __slots__ = ("_app_id", "_async", "_builtin", "_fn", "_hooks", "_name", "_plain")

    def __init__(self, decryptor: DecryptorLike, *, app_id: str, hooks: HookSet) -> None:
        self._fn, self._async = _resolve(decryptor)
        #: Our own decryptors' messages hold no values; another's might: only its class shows.
        self._builtin = _builtin(decryptor)
        self._name = repr(decryptor) if self._builtin else type(decryptor).__name__
        self._app_id = app_id
        self._hooks = hooks
        #: namespace -> {ciphertext: plain text} for the ciphertexts of its latest release.
        self._plain: dict[str, dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"<Decryption {self._name} {'async' if self._async else 'sync'}>"

    # ------------------------------------------------------------------ preparer

    async def prepare(self, namespace: str, items: Mapping[str, str]) -> None:
        """Decrypt the release's new ciphertexts ahead of the transform (see the module)."""
        known = self._plain.get(namespace, {})
        todo: dict[str, list[str]] = {}  # ciphertext -> the keys that hold it
        reused: dict[str, str] = {}
        for key, value in items.items():
            text = unwrap(value)
            if text is None:
                continue
            plain = known.get(text)
            if plain is None:
                todo.setdefault(text, []).append(key)
            else:
                reused[text] = plain
        if not todo:
            return
        if self._async:
            found, reason = await self._decrypt_async(list(todo))
        else:
            found, reason = await asyncio.to_thread(self._decrypt_sync, list(todo))
        failed = [key for text, keys in todo.items() if text not in found for key in keys]
        if failed:
            self._refuse(DecryptionError(namespace, failed, reason or "unknown"))
        # Read again after the await: another release of it may have been applied meanwhile
        # (and the cache pruned to its ciphertexts), so what this one reuses goes back in.
        self._plain[namespace] = self._plain.get(namespace, {}) | reused | found

    def _decrypt_sync(self, texts: list[str]) -> tuple[dict[str, str], str | None]:
        found: dict[str, str] = {}
        reason: str | None = None
        for text in texts:
            try:
                found[text] = self._checked(self._fn(text))
            except Exception as exc:
                reason = reason or self._reason(exc)
        return found, reason

    async def _decrypt_async(self, texts: list[str]) -> tuple[dict[str, str], str | None]:
        gate = asyncio.Semaphore(CONCURRENCY)
        found: dict[str, str] = {}
        reasons: list[str] = []

        async def one(text: str) -> None:
            async with gate:
                try:
                    found[text] = self._checked(await cast(Awaitable[Any], self._fn(text)))
                except Exception as exc:
                    reasons.append(self._reason(exc))

        await asyncio.gather(*(one(text) for text in texts))
        return found, reasons[0] if reasons else None

    def _checked(self, plain: object) -> str:
        if inspect.isawaitable(plain):
            if inspect.iscoroutine(plain):
                plain.close()  # never awaited: no "was never awaited" warning
            raise TypeError("a sync decryptor returned an awaitable: make decrypt async")
        if not isinstance(plain, str):
            raise TypeError(f"the decryptor returned {type(plain).__name__}, not str")
        return plain

    def _reason(self, exc: Exception) -> str:
        if self._builtin and isinstance(exc, ValueError):
            return f"{self._name}: {exc}"
        return f"{self._name} raised {type(exc).__name__}"

    def _refuse(self, error: DecryptionError) -> None:
        logger.error("%s; keeping its last good values", error)
        if self._hooks:
            self._hooks.error(ErrorEvent(self._app_id, "decrypt", error, error.namespace))
        raise error

    # ------------------------------------------------------------------ transform

    def transform(self, namespace: str, items: Mapping[str, str]) -> Mapping[str, str]:
        """``items`` with every ``ENC(...)`` value in plain text (``items`` itself if none)."""
        known = self._plain.get(namespace, {})
        used: dict[str, str] = {}
        out: dict[str, str] | None = None
        missing: dict[str, list[str]] = {}
        for key, value in items.items():
            text = unwrap(value)
            if text is None:
                continue
            plain = known.get(text)
            if plain is None:
                missing.setdefault(text, []).append(key)
                continue
            used[text] = plain
            if out is None:
                out = dict(items)
            out[key] = plain
        if missing:
            if self._async:
                self._refuse(
                    DecryptionError(
                        namespace,
                        [k for keys in missing.values() for k in keys],
                        f"{self._name} is async and the release was not prepared: deliver "
                        "it with NamespaceStore.deliver()",
                    )
                )
            found, reason = self._decrypt_sync(list(missing))
            failed = [k for text, keys in missing.items() if text not in found for k in keys]
            if failed:
                self._refuse(DecryptionError(namespace, failed, reason or "unknown"))
            if out is None:
                out = dict(items)
            for text, keys in missing.items():
                used[text] = found[text]
                for key in keys:
                    out[key] = found[text]
        self._plain[namespace] = used  # the cache: this release's ciphertexts, no more
        return items if out is None else out


def install(
    store: NamespaceStore, decryptor: DecryptorLike | None, *, app_id: str, hooks: HookSet
) -> Decryption | None:
    """Decrypt ``store``'s releases with ``decryptor`` (nothing when it is None)."""
    if decryptor is None:
        return None
    decryption = Decryption(decryptor, app_id=app_id, hooks=hooks)
    store.add_preparer(decryption.prepare)
    store.add_transform(decryption.transform)
    return decryption

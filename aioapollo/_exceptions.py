"""The exception tree. Every error the client raises derives from :class:`ApolloError`.

::

    ApolloError
    ├── ApolloConnectionError (ConnectionError)   no config service reached (or discovered)
    │   └── ApolloTimeoutError (TimeoutError)     ... or did not answer in time
    ├── ApolloResponseError (ValueError)          a reply that is not what Apollo sends
    ├── ApolloHTTPStatusError                     an unexpected status code (.status, .url)
    │   ├── ApolloAuthError (PermissionError)     401: wrong secret or clock skew (.reason)
    │   └── ApolloNotFoundError (LookupError)     404: no release for app/cluster/namespace
    ├── NamespaceUnavailableError                 start(): neither server nor cache had it
    ├── NamespaceNotFoundError (LookupError)      a namespace this client does not watch
    ├── ConfigValueError (ValueError)             a typed read of a malformed value
    ├── DecryptionError (ValueError)              an ENC(...) value that does not decrypt
    ├── ClientStateError (RuntimeError)           a call that the client's state forbids
    ├── LoopCrashedError (RuntimeError)           a background loop crashed (hooks only)
    └── ResourceBuildError (RuntimeError)         a live resource's build raised (_resources)

The portal OpenAPI client (``aioapollo.openapi``) adds ``OpenApiError`` and its subclasses
under ``ApolloHTTPStatusError`` (see ``aioapollo/openapi/_errors.py``).

Messages name apps, clusters, namespaces, keys and URLs (without query strings or a
``user:password@``) and say what to check; they never hold config values or the access-key
secret.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = [
    "ApolloAuthError",
    "ApolloConnectionError",
    "ApolloError",
    "ApolloHTTPStatusError",
    "ApolloNotFoundError",
    "ApolloResponseError",
    "ApolloTimeoutError",
    "ClientStateError",
    "ConfigValueError",
    "DecryptionError",
    "LoopCrashedError",
    "NamespaceNotFoundError",
    "NamespaceUnavailableError",
]


class ApolloError(Exception):
    """Base class of every aioapollo error."""


class ApolloConnectionError(ApolloError, ConnectionError):
    """The config or meta service could not be reached (refused, reset, DNS, TLS), or
    discovery found no config service; the message names each URL tried and why it failed."""


class ApolloTimeoutError(ApolloConnectionError, TimeoutError):
    """The service accepted the connection but did not answer in time."""


class ApolloResponseError(ApolloError, ValueError):
    """A reply that cannot be a real Apollo reply: bad JSON, wrong shape, too large."""


class ApolloHTTPStatusError(ApolloError):
    """The service answered with a status code the protocol does not expect here.

    Attributes:
        status: The HTTP status code.
        url: The URL without its query string (queries may carry release keys).
    """

    def __init__(self, message: str, *, status: int, url: str) -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class ApolloAuthError(ApolloHTTPStatusError, PermissionError):
    """401 from the access-key filter.

    Attributes:
        reason: ``"clock_skew"`` when the local clock is 60 s or more off the server's,
            ``"signature"`` when the secret is wrong (or missing while the app requires one).
    """

    def __init__(self, message: str, *, status: int, url: str, reason: str) -> None:
        super().__init__(message, status=status, url=url)
        self.reason = reason


class ApolloNotFoundError(ApolloHTTPStatusError, LookupError):
    """404: from ``/configs``, no release of the namespace for that app id and cluster.

    Attributes:
        app_id, cluster, data_center, namespace: What was asked for (``/configs`` only;
            ``None`` for a 404 from another endpoint).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        url: str,
        app_id: str | None = None,
        cluster: str | None = None,
        data_center: str | None = None,
        namespace: str | None = None,
    ) -> None:
        super().__init__(message, status=status, url=url)
        self.app_id = app_id
        self.cluster = cluster
        self.data_center = data_center
        self.namespace = namespace


class NamespaceUnavailableError(ApolloError):
    """``start()`` could load some namespaces neither from Apollo nor from the disk cache.

    Attributes:
        namespaces: The namespace names that could not be served.
        causes: For each of them, the last error seen while loading it.
    """

    def __init__(self, causes: Mapping[str, BaseException]) -> None:
        self.namespaces = tuple(causes)
        self.causes = dict(causes)
        # Namespaces that failed for the same reason (discovery, a dead server) share one entry.
        reasons: dict[str, list[str]] = {}
        for ns, exc in causes.items():
            reasons.setdefault(_describe(exc), []).append(repr(ns))
        detail = "; ".join(f"{', '.join(names)}: {why}" for why, names in reasons.items())
        super().__init__(
            f"could not load namespace(s) {', '.join(map(repr, causes))} from Apollo or "
            f"the local cache ({detail})"
        )


class NamespaceNotFoundError(ApolloError, LookupError):
    """A read named a namespace the client was not configured to watch."""

    def __init__(self, namespace: str) -> None:
        super().__init__(
            f"namespace {namespace!r} is not watched by this client; "
            "add it to ApolloClient(namespaces=[...])"
        )
        self.namespace = namespace


class ConfigValueError(ApolloError, ValueError):
    """A typed read found a value it cannot convert. The value itself is never shown."""

    def __init__(self, namespace: str, key: str, expected: str) -> None:
        super().__init__(f"{namespace}/{key}: value is not a valid {expected}")
        self.namespace = namespace
        self.key = key
        self.expected = expected


class DecryptionError(ApolloError, ValueError):
    """Values of the form ``ENC(...)`` in a release did not decrypt (a wrong password or key,
    corrupt text, a decryptor that failed). The release is not applied: the namespace keeps
    its last good values. Neither the values nor the decryptor's own message are shown.

    Attributes:
        namespace: The namespace of the release.
        keys: The keys whose values did not decrypt, sorted.
        reason: Why, in words that hold no value (``"ValueError"`` for a decryptor of yours,
            whose messages are not shown: they may hold what it was given).
    """

    def __init__(self, namespace: str, keys: Iterable[str], reason: str) -> None:
        self.namespace = namespace
        self.keys = tuple(sorted(keys))
        self.reason = reason
        shown = ", ".join(map(repr, self.keys[:10]))
        more = f" and {len(self.keys) - 10} more" if len(self.keys) > 10 else ""
        super().__init__(
            f"namespace {namespace!r}: key(s) {shown}{more} did not decrypt ({reason}); "
            "check the decryptor's password or key"
        )


class LocalFileError(ApolloError, ValueError):
    """A namespace file of ``local_dir``, ``overrides`` or ``bootstrap_dir`` is missing or
    cannot be read (not a mapping of strings, YAML without PyYAML, text that does not parse).

    Raised by ``start()`` when a namespace cannot be served at all; after that, a bad edit is
    a warning and the namespace keeps its last good values. Values are never shown.

    Attributes:
        problems: For each namespace, what is wrong (the path and why).
    """

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__("; ".join(f"namespace {n!r}: {why}" for n, why in problems.items()))


class ClientStateError(ApolloError, RuntimeError):
    """The client's lifecycle state does not allow this call (e.g. ``start()`` twice)."""


class LoopCrashedError(ApolloError, RuntimeError):
    """A background loop of the client raised an unexpected exception; it is restarted.

    Never raised to the caller: it is what hooks get in ``ErrorEvent.error`` (operation
    ``"loop:<name>"``). The exception the loop raised is its ``__cause__``; the message names
    only the loop and that exception's class.

    Attributes:
        loop: ``"poll"``, ``"refresh"``, ``"listeners"``, ``"cache"``, ``"share"`` or
            ``"share-send"``.
        crash: The class name of the exception the loop raised.
    """

    def __init__(self, loop: str, crash: str) -> None:
        super().__init__(f"the {loop} loop crashed with {crash}; it is restarted with backoff")
        self.loop = loop
        self.crash = crash


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

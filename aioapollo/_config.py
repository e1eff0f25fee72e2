"""Client settings: one frozen dataclass, validated once, plus the Java client's env names."""

from __future__ import annotations

import difflib
import enum
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlsplit, urlunsplit

from ._apollo.wire import APP_ID_PATTERN
from ._hooks import Hooks
from .crypto._env import CRYPTO_ENV, decryptor_from_env
from .crypto._types import DecryptorLike

__all__ = [
    "DEFAULT",
    "ClientOptions",
    "ClientSettings",
    "DefaultType",
    "EnvOverrides",
    "answer_key",
    "default_cache_dir",
    "group_fingerprint",
    "options_from_env",
    "redact_url",
    "url_problem",
]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/aioapollo``, else ``~/.cache/aioapollo``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "aioapollo"


def redact_url(url: str) -> str:
    """``url`` without its ``user:password@`` part, for messages, logs and reprs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _servers(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(_trim(item) for item in items if item.strip())


def _trim(url: str) -> str:
    """``url`` without surrounding blanks and trailing ``/`` (but ``http://`` stays whole)."""
    url = url.strip()
    trimmed = url.rstrip("/")
    return trimmed if "://" in trimmed else url


_HOST_EXTRA = frozenset("-._~")


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an Apollo server URL, or None when it can.

    An http(s) scheme, a host, an optional port from 1 to 65535 and an optional path prefix
    (Apollo may live under a context path); no whitespace, query or fragment. The reason never
    quotes the ``user:password@`` part.
    """
    if any(c.isspace() or not c.isprintable() for c in url):
        return "it contains whitespace or control characters"
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return "it must start with http:// or https://"
    userinfo, at, rest = rest.rpartition("@")
    if at and any(c in userinfo for c in "/?#"):
        return (
            "it has '/', '?' or '#' before its last '@' (percent-encode them in a "
            "user:password@ part; write '@' in a path as %40)"
        )
    if "?" in rest or "#" in rest:
        return "it must not have a query ('?') or a fragment ('#')"
    authority = rest.partition("/")[0]
    if authority.startswith("["):
        host, bracket, port_part = authority[1:].partition("]")
        if not bracket or not _is_ipv6(host.partition("%")[0]):
            return f"host [{host}{bracket} is not an IPv6 address in brackets"
        if port_part and not port_part.startswith(":"):
            return f"unexpected {port_part!r} after the IPv6 address"
        port = port_part[1:] if port_part else None
    else:
        host, colon, port_text = authority.partition(":")
        port = port_text if colon else None
        if not host:
            return "it has no host"
        if not all(c.isalnum() or c in _HOST_EXTRA for c in host):
            return f"host {host!r} holds characters a host name cannot have"
    if port is not None and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return f"port {port!r} is not a number from 1 to 65535"
    return None


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _shown(url: str) -> str:
    """``url`` for a message saying it is invalid: all up to its last ``@`` is left out."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    return scheme + sep + rest.rpartition("@")[2]


def _check_servers(option: str, urls: tuple[str, ...]) -> None:
    for url in urls:
        problem = url_problem(url)
        if problem is not None:
            raise ValueError(f"{option} URL {_shown(url)!r} is not valid: {problem}")


class DefaultType(enum.Enum):
    """The type of :data:`DEFAULT`: "not given, use the default" where None means "off"."""

    DEFAULT = "DEFAULT"

    def __repr__(self) -> str:
        return "DEFAULT"


#: ``cache_dir=DEFAULT``: the per-user cache directory (``None`` turns the cache off).
DEFAULT = DefaultType.DEFAULT


class ClientSettings(TypedDict, total=False):
    """Every keyword argument of :class:`~aioapollo.ApolloClient` (and of
    :class:`~aioapollo.SyncApolloClient`), typed."""

    namespaces: Iterable[str] | str
    config_server: str | Iterable[str] | None
    meta_server: str | Iterable[str] | None
    cluster: str
    data_center: str | None
    secret: str | None
    label: str | None
    ip: str | None
    cache_dir: str | os.PathLike[str] | DefaultType | None
    allow_empty: bool
    hooks: Hooks | Iterable[Hooks] | None
    connect_timeout: float
    read_timeout: float
    poll_timeout: float
    server_hold: float
    start_timeout: float | None
    warm_start_timeout: float | None
    lazy_start: bool
    refresh_interval: float
    backoff_initial: float
    backoff_max: float
    fetch_retry_delay: float
    poll_min_interval: float
    close_timeout: float
    listener_timeout: float | None
    max_body_bytes: int
    ssl: ssl.SSLContext | bool | None
    share_poll: bool
    share_dir: str | os.PathLike[str] | None
    share_max_followers: int
    decryptor: DecryptorLike | None
    local_dir: str | os.PathLike[str] | None
    overrides: str | os.PathLike[str] | None
    bootstrap_dir: str | os.PathLike[str] | None
    resolve_placeholders: bool


class EnvOverrides(ClientSettings, total=False):
    """What ``from_env(**overrides)`` takes: the constructor's keywords and ``app_id``."""

    app_id: str


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Everything an :class:`ApolloClient` is configured with. Times are in seconds."""

    app_id: str
    namespaces: tuple[str, ...] = ("application",)
    config_servers: tuple[str, ...] = ()
    meta_servers: tuple[str, ...] = ()
    cluster: str = "default"
    data_center: str | None = None
    secret: str | None = field(default=None, repr=False)
    label: str | None = None
    ip: str | None = None
    cache_dir: Path | None = None
    allow_empty: bool = False
    connect_timeout: float = 2.0
    read_timeout: float = 5.0
    poll_timeout: float = 90.0
    #: How long the config service holds an idle long poll (60 s for Apollo). Only lower it
    #: for a server known to hold polls for less (a test server); ``poll_timeout`` must
    #: exceed it, so a long poll never times out while it is legitimately held.
    server_hold: float = 60.0
    #: Bound of the whole load from Apollo at ``start()``, discovery included (None: only
    #: the per-request timeouts bound it). Then the cache is served, else start() fails.
    start_timeout: float | None = None
    #: How long ``start()`` waits for Apollo, discovery included, for a namespace that has
    #: warm values (a cache file, or values inherited across fork): then it serves them and
    #: goes on loading in the background. Short, so a preforking master, a readiness probe
    #: or a worker's boot timeout is never held up by a hung config service. None: wait as
    #: long as for a namespace without warm values.
    warm_start_timeout: float | None = 3.0
    #: Let the first awaited read (``await client.get(...)``, ``namespace()``, the typed
    #: getters) start the client, once, on the loop it runs on: for servers without an ASGI
    #: lifespan (Daphne). Nobody closes such a client; it lives as long as its process.
    lazy_start: bool = False
    refresh_interval: float = 300.0
    backoff_initial: float = 1.0
    backoff_max: float = 120.0
    fetch_retry_delay: float = 1.0
    poll_min_interval: float = 0.5
    close_timeout: float = 5.0
    #: Replies larger than this are refused (ApolloResponseError), so a broken proxy cannot
    #: exhaust memory.
    max_body_bytes: int = 64 * 1024 * 1024
    #: TLS for https:// servers: ``None``/``True`` verifies certificates and host names
    #: against the system's CAs; an :class:`ssl.SSLContext` is used as given (e.g. one that
    #: trusts a private CA); ``False`` turns verification off.
    ssl: ssl.SSLContext | bool | None = None
    #: Share one long poll among the processes of this host that have the same options
    #: (see docs/sharing.md): one leader polls Apollo and pushes releases to the others.
    share_poll: bool = False
    #: Where the group's lock and socket live: a private (0700) directory of this user.
    #: ``None``: ``$XDG_RUNTIME_DIR/aioapollo``, else ``<tmp>/aioapollo-<euid>``, chosen by
    #: ``start()`` (a server may drop privileges after importing the app).
    share_dir: Path | None = None
    #: The most followers a sharing leader serves; more are refused (told why) and poll
    #: Apollo themselves, asking again with backoff. Keeps a leader's descriptors bounded.
    share_max_followers: int = 128
    #: How long one change-listener call may take. Past it, a coroutine listener is
    #: cancelled and a plain one is left to finish on its own (it gets no events until it
    #: does); the other listeners go on. ``None`` waits for ever.
    listener_timeout: float | None = 60.0
    #: Decrypts values of the form ``ENC(...)`` as releases arrive, so reads, listeners and
    #: snapshots see plain text (see docs/secrets.md): an ``aioapollo.crypto.Jasypt`` or
    #: ``Fernet``, or anything with a sync or async ``decrypt(text) -> str`` (or such a
    #: function). The disk cache and the sharing socket keep ``ENC(...)``. Never in the repr.
    decryptor: DecryptorLike | None = field(default=None, repr=False)
    #: Local development (see docs/local.md): read every namespace from the files under this
    #: directory (the layout ``aioapollo config export`` writes, from the env directory
    #: down), never ask Apollo, and apply each edit within a second. No servers are needed,
    #: no cache is written and ``share_poll`` is not used.
    local_dir: Path | None = None
    #: Namespace files layered over what Apollo serves (a developer's own values over a
    #: shared environment), watched like ``local_dir``; ``stats()`` names the keys. Logs a
    #: warning at every start, so it never slips into production unseen.
    overrides: Path | None = None
    #: A snapshot of the namespaces (same layout; e.g. a Kubernetes ConfigMap mounted as a
    #: directory), served when Apollo cannot serve a namespace at ``start()`` and there is no
    #: cache; its source is ``BOOTSTRAP`` until Apollo answers.
    bootstrap_dir: Path | None = None
    #: Resolve ``${key}`` and ``${key:default}`` inside values, across the client's
    #: namespaces, again whenever a referenced key changes (see docs/local.md).
    resolve_placeholders: bool = False

    def __repr__(self) -> str:
        # The secret is left out and server URLs lose any user:password (basic auth).
        shown = []
        for item in fields(self):
            if not item.repr:
                continue
            value = getattr(self, item.name)
            if item.name in ("config_servers", "meta_servers"):
                value = tuple(redact_url(url) for url in value)
            shown.append(f"{item.name}={value!r}")
        return f"ClientOptions({', '.join(shown)})"

    def __post_init__(self) -> None:
        if not self.app_id or not APP_ID_PATTERN.fullmatch(self.app_id):
            raise ValueError(
                f"app_id {self.app_id!r} is not a valid Apollo appId "
                "(letters, digits, '_', '-' and '.', not starting with '.')"
            )
        if not self.namespaces:
            raise ValueError("namespaces must name at least one namespace")
        if len(set(self.namespaces)) != len(self.namespaces):
            raise ValueError("namespaces must not repeat a name")
        if not self.config_servers and not self.meta_servers and self.local_dir is None:
            raise ValueError(
                "no Apollo server given: pass config_server= (direct; environment variable "
                "APOLLO_CONFIG_SERVICE) or meta_server= (discovery; environment variable "
                "APOLLO_META), or local_dir= (files only; APOLLO_LOCAL_DIR)"
            )
        _check_servers("config_server", self.config_servers)
        _check_servers("meta_server", self.meta_servers)
        if not self.cluster:
            raise ValueError("cluster must not be empty")
        if self.secret is not None and any(
            redact_url(url) != url for url in self.config_servers + self.meta_servers
        ):
            raise ValueError(
                "a secret cannot be combined with user:password@ in a server URL: "
                "both need the Authorization header"
            )
        if self.ssl is not None and not isinstance(self.ssl, bool | ssl.SSLContext):
            raise TypeError("ssl must be an ssl.SSLContext, True/None (verify) or False")
        if self.listener_timeout is not None and not self.listener_timeout > 0:
            raise ValueError("listener_timeout must be a positive number of seconds or None")
        for name in ("start_timeout", "warm_start_timeout"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be None or a number of seconds >= 0")
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        if self.share_max_followers < 1:
            raise ValueError("share_max_followers must be at least 1")
        if not self.server_hold > 0:
            raise ValueError("server_hold must be a positive number of seconds")
        if not self.poll_timeout > self.server_hold:
            raise ValueError(
                f"poll_timeout must exceed the server's {self.server_hold:g} s long-poll hold "
                "(server_hold)"
            )

    @classmethod
    def build(
        cls,
        app_id: str,
        *,
        namespaces: Iterable[str] | str = ("application",),
        config_server: str | Iterable[str] | None = None,
        meta_server: str | Iterable[str] | None = None,
        cache_dir: str | os.PathLike[str] | DefaultType | None = DEFAULT,
        **kwargs: Any,
    ) -> ClientOptions:
        """Normalise the constructor's friendlier argument forms."""
        names = (namespaces,) if isinstance(namespaces, str) else tuple(namespaces)
        for name in ("share_dir", "local_dir", "overrides", "bootstrap_dir"):
            if kwargs.get(name) is not None:
                kwargs[name] = Path(kwargs[name])
        if cache_dir is DEFAULT:
            path: Path | None = default_cache_dir()
        else:
            path = None if cache_dir is None else Path(cache_dir)
        return cls(
            app_id=app_id,
            namespaces=names,
            config_servers=_servers(config_server),
            meta_servers=_servers(meta_server),
            cache_dir=path,
            **kwargs,
        )


logger = logging.getLogger("aioapollo")

#: Every ``APOLLO_*`` environment variable aioapollo reads: the client's (``from_env``, the
#: command line) and the portal OpenAPI client's.
KNOWN_ENV = frozenset(
    {
        "APOLLO_META",
        "APOLLO_CONFIG_SERVICE",
        "APOLLO_CONFIGSERVICE",
        "APOLLO_ACCESS_KEY_SECRET",
        "APOLLO_ACCESSKEY_SECRET",
        "APOLLO_LABEL",
        "APOLLO_CLUSTER",
        "APOLLO_CACHE_DIR",
        "APOLLO_CACHEDIR",
        "APOLLO_CACHE_FILE_ENABLE",
        "APOLLO_NAMESPACES",
        "APOLLO_SHARE_POLL",
        "APOLLO_SHARE_DIR",
        "APOLLO_LOCAL_DIR",
        "APOLLO_OVERRIDES_DIR",
        "APOLLO_BOOTSTRAP_DIR",
        "APOLLO_RESOLVE_PLACEHOLDERS",
        "APOLLO_PORTAL_URL",
        "APOLLO_OPENAPI_TOKEN",
        "APOLLO_OPENAPI_OPERATOR",
        "APOLLO_OPENAPI_TIMEOUT",
        *CRYPTO_ENV,
    }
)
#: Names people reach for that are not close in spelling to the one meant.
_MEANT = {
    "APOLLO_META_SERVER": "APOLLO_META",
    "APOLLO_META_SERVICE": "APOLLO_META",
    "APOLLO_APP_ID": "APP_ID",
    "APOLLO_APPID": "APP_ID",
    "APOLLO_SECRET": "APOLLO_ACCESS_KEY_SECRET",
}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_warned_env: set[str] = set()


def env_bool(name: str, value: str) -> bool:
    """A boolean environment variable: true/false, 1/0, yes/no, on/off (any case), or an error."""
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(
        f"environment variable {name}={value!r} is not a boolean: use true or false "
        "(or 1/0, yes/no, on/off)"
    )


def misspelt_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``APOLLO_*`` variables aioapollo does not read that look like one it does: name -> meant.

    Others (the Java client has more, such as ``APOLLO_PROPERTY_ORDER_ENABLE``) are left alone.
    """
    suffixes = {name.removeprefix("APOLLO_"): name for name in KNOWN_ENV}
    found: dict[str, str] = {}
    for name in environ:
        upper = name.upper()
        if not upper.startswith("APOLLO_") or name in KNOWN_ENV:
            continue
        if upper in KNOWN_ENV:  # apollo_meta: the case is wrong
            found[name] = upper
        elif upper in _MEANT:
            found[name] = _MEANT[upper]
        elif close := difflib.get_close_matches(upper[7:], suffixes, n=1, cutoff=0.75):
            found[name] = suffixes[close[0]]
    return found


def _warn_misspelt(environ: Mapping[str, str]) -> None:
    for name, meant in misspelt_env(environ).items():
        if name not in _warned_env:  # once per process: from_env runs in every worker
            _warned_env.add(name)
            logger.warning(
                "environment variable %s is not one aioapollo reads: did you mean %s?",
                name,
                meant,
            )


def options_from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    """Read the Java client's environment variables into :meth:`ClientOptions.build` kwargs.

    ``APP_ID``, ``APOLLO_META``, ``APOLLO_CONFIG_SERVICE``, ``APOLLO_ACCESS_KEY_SECRET``
    (or the older ``APOLLO_ACCESSKEY_SECRET``), ``APOLLO_LABEL``, ``IDC``, ``APOLLO_CLUSTER``
    (else the IDC, else ``default``), ``APOLLO_CACHE_DIR`` (or ``APOLLO_CACHEDIR``),
    ``APOLLO_CACHE_FILE_ENABLE=false`` to disable the cache, and ``APOLLO_NAMESPACES``
    (comma separated; aioapollo's own), ``APOLLO_SHARE_POLL=true`` and ``APOLLO_SHARE_DIR``
    (aioapollo's own: one long poll per host), ``APOLLO_LOCAL_DIR``,
    ``APOLLO_OVERRIDES_DIR``, ``APOLLO_BOOTSTRAP_DIR`` and ``APOLLO_RESOLVE_PLACEHOLDERS``
    (aioapollo's own: local files, snapshots, placeholders), and a ``decryptor`` from
    ``APOLLO_JASYPT_PASSWORD``/``APOLLO_JASYPT_PASSWORD_FILE`` or
    ``APOLLO_FERNET_KEYS``/``APOLLO_FERNET_KEYS_FILE`` (see
    :func:`aioapollo.crypto.decryptor_from_env`). Keyword overrides win over the environment.

    Boolean variables take true/false, 1/0, yes/no or on/off; anything else is a ValueError
    naming the variable. An ``APOLLO_*`` variable that is not read but looks like one that is
    (``APOLLO_CONFIG_SERVER``) logs a warning saying which was meant.
    """
    env = os.environ if environ is None else environ
    _warn_misspelt(env)

    def pick(*names: str) -> str | None:
        for name in names:
            value = env.get(name, "").strip()
            if value:
                return value
        return None

    found: dict[str, Any] = {}
    if (app_id := pick("APP_ID")) is not None:
        found["app_id"] = app_id
    if (meta := pick("APOLLO_META")) is not None:
        found["meta_server"] = meta
    if (direct := pick("APOLLO_CONFIG_SERVICE", "APOLLO_CONFIGSERVICE")) is not None:
        found["config_server"] = direct
        found.pop("meta_server", None)
    if (secret := pick("APOLLO_ACCESS_KEY_SECRET", "APOLLO_ACCESSKEY_SECRET")) is not None:
        found["secret"] = secret
    if (label := pick("APOLLO_LABEL")) is not None:
        found["label"] = label
    idc = pick("IDC")
    if idc is not None:
        found["data_center"] = idc
    cluster = pick("APOLLO_CLUSTER") or idc
    if cluster is not None:
        found["cluster"] = cluster
    if (names := pick("APOLLO_NAMESPACES")) is not None:
        found["namespaces"] = [n.strip() for n in names.split(",") if n.strip()]
    cache_file = pick("APOLLO_CACHE_FILE_ENABLE")
    if cache_file is not None and not env_bool("APOLLO_CACHE_FILE_ENABLE", cache_file):
        found["cache_dir"] = None
    elif (cache := pick("APOLLO_CACHE_DIR", "APOLLO_CACHEDIR")) is not None:
        found["cache_dir"] = cache
    share = pick("APOLLO_SHARE_POLL")
    if share is not None:
        found["share_poll"] = env_bool("APOLLO_SHARE_POLL", share)
    if (share_dir := pick("APOLLO_SHARE_DIR")) is not None:
        found["share_dir"] = share_dir
    for var, option in (
        ("APOLLO_LOCAL_DIR", "local_dir"),
        ("APOLLO_OVERRIDES_DIR", "overrides"),
        ("APOLLO_BOOTSTRAP_DIR", "bootstrap_dir"),
    ):
        if (directory := pick(var)) is not None:
            found[option] = directory
    placeholders = pick("APOLLO_RESOLVE_PLACEHOLDERS")
    if placeholders is not None:
        found["resolve_placeholders"] = env_bool("APOLLO_RESOLVE_PLACEHOLDERS", placeholders)
    if "decryptor" not in overrides and (decryptor := decryptor_from_env(env)) is not None:
        found["decryptor"] = decryptor
    if "config_server" in overrides or "meta_server" in overrides:
        found.pop("config_server", None)
        found.pop("meta_server", None)
    found.update(overrides)
    if "app_id" not in found:
        raise ValueError("set APP_ID in the environment or pass app_id=")
    return found


OPTION_NAMES = frozenset(f.name for f in fields(ClientOptions))


def _digest(parts: Iterable[object]) -> str:
    blob = json.dumps(list(parts), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def answer_key(options: ClientOptions) -> str:
    """A hash of everything that decides what Apollo answers for a namespace.

    App id, cluster, data center, label, the reported ip and the servers asked (two
    environments' config services answer differently for the same app). Cache files are
    keyed by it, so two processes with different labels never serve each other's release.
    """
    return _digest(
        (
            "answer/1",
            options.app_id,
            options.cluster,
            options.data_center,
            options.label,
            options.ip,
            sorted(options.config_servers),
            sorted(options.meta_servers),
        )
    )


def group_fingerprint(options: ClientOptions) -> str:
    """The sharing group: clients with equal fingerprints may share one long poll.

    :func:`answer_key` plus the namespace set and the secret. The secret enters only as a
    keyed digest: the fingerprint is printed and shown in ``stats()``, the secret never is.
    """
    secret = (
        hmac.new(b"aioapollo-share-group", options.secret.encode(), "sha256").hexdigest()
        if options.secret is not None
        else None
    )
    return _digest(("group/1", answer_key(options), sorted(options.namespaces), secret))

"""aioapollo: an asyncio-native client for the Apollo configuration center."""

from ._client import ApolloClient, ClientState
from ._config import ClientOptions, ClientSettings
from ._core.listeners import ChangeListener, ListenerStats
from ._exceptions import (
    ApolloAuthError,
    ApolloConnectionError,
    ApolloError,
    ApolloHTTPStatusError,
    ApolloNotFoundError,
    ApolloResponseError,
    ApolloTimeoutError,
    ClientStateError,
    ConfigValueError,
    DecryptionError,
    LocalFileError,
    LoopCrashedError,
    NamespaceNotFoundError,
    NamespaceUnavailableError,
)
from ._hooks import ChangeEvent, ErrorEvent, FetchEvent, Hooks, PollEvent, RoleEvent
from ._models import (
    ChangeType,
    ConfigChange,
    ConfigChangeEvent,
    NamespaceSnapshot,
    Role,
    Source,
)
from ._reload import reload_server_on_change
from ._resources import LiveResource, ResourceBuildError, ResourceStats, SyncLiveResource
from ._stats import ClientStats, NamespaceStats
from ._sync import SyncApolloClient
from ._version import __version__

__all__ = [
    "ApolloAuthError",
    "ApolloClient",
    "ApolloConnectionError",
    "ApolloError",
    "ApolloHTTPStatusError",
    "ApolloNotFoundError",
    "ApolloResponseError",
    "ApolloTimeoutError",
    "ChangeEvent",
    "ChangeListener",
    "ChangeType",
    "ClientOptions",
    "ClientSettings",
    "ClientState",
    "ClientStateError",
    "ClientStats",
    "ConfigChange",
    "ConfigChangeEvent",
    "ConfigValueError",
    "DecryptionError",
    "ErrorEvent",
    "FetchEvent",
    "Hooks",
    "ListenerStats",
    "LiveResource",
    "LocalFileError",
    "LoopCrashedError",
    "NamespaceNotFoundError",
    "NamespaceSnapshot",
    "NamespaceStats",
    "NamespaceUnavailableError",
    "PollEvent",
    "ResourceBuildError",
    "ResourceStats",
    "Role",
    "RoleEvent",
    "Source",
    "SyncApolloClient",
    "SyncLiveResource",
    "__version__",
    "reload_server_on_change",
]

# Public names report the package they are imported from (as httpx does), not the private
# module that defines them: reprs, docs and pickles name ``aioapollo.X``.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("aioapollo."):
        _obj.__module__ = "aioapollo"
del _name, _obj

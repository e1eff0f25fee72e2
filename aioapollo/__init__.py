"""aioapollo: an asyncio-native client for the Apollo configuration center."""

from ._client import ApolloClient, ClientState
from ._config import ClientOptions
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
    NamespaceNotFoundError,
    NamespaceUnavailableError,
)
from ._listeners import ChangeListener
from ._models import ChangeType, ConfigChange, ConfigChangeEvent, NamespaceSnapshot, Source
from ._reload import reload_server_on_change
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
    "ChangeListener",
    "ChangeType",
    "ClientOptions",
    "ClientState",
    "ClientStateError",
    "ConfigChange",
    "ConfigChangeEvent",
    "ConfigValueError",
    "NamespaceNotFoundError",
    "NamespaceSnapshot",
    "NamespaceUnavailableError",
    "Source",
    "SyncApolloClient",
    "__version__",
    "reload_server_on_change",
]

"""aioapollo.testing: a faithful in-process Apollo config service for tests and local development.

``async with ApolloTestServer() as server:`` serves ``/configs``, ``/configfiles``,
``/notifications/v2`` and ``/services/config`` on ``server.url`` the way the real config service
does, from releases you publish with ``server.publish(...)``; and the portal OpenAPI
(``/openapi/v1/...``, tokens from ``server.add_openapi_token(...)``) over the same releases.
See the README section "Testing against Apollo without Apollo".
"""

from ._models import Fault, OpenApiExchange, RecordedRequest
from ._portal import Consumer, ItemChange, PortalError, PortalState
from ._seed import SeedError, apply_seed, load_seed
from ._server import ApolloTestServer
from ._store import GrayRule, Release, ReleaseStore

__all__ = [
    "ApolloTestServer",
    "Consumer",
    "Fault",
    "GrayRule",
    "ItemChange",
    "OpenApiExchange",
    "PortalError",
    "PortalState",
    "RecordedRequest",
    "Release",
    "ReleaseStore",
    "SeedError",
    "apply_seed",
    "load_seed",
]

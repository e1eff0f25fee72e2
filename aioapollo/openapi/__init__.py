"""aioapollo.openapi: manage Apollo through the portal's OpenAPI (the management plane).

``async with ApolloOpenApiClient(portal_url, token=..., operator="ci-bot") as api:`` reads and
changes apps, clusters, namespaces and items, publishes and rolls back releases and drives gray
releases. See docs/openapi.md. This package does not use the config client (``ApolloClient``)
and is not used by it; they share only the exception tree.
"""

from ._client import ApolloOpenApiClient
from ._errors import (
    NamespaceLockedError,
    OpenApiAuthError,
    OpenApiBadRequestError,
    OpenApiConflictError,
    OpenApiError,
    OpenApiForbiddenError,
    OpenApiNotFoundError,
    OpenApiRateLimitedError,
    OpenApiServerError,
    OpenApiUnsupportedError,
    PublishNotAllowedError,
)
from ._models import (
    App,
    AppNamespace,
    Audit,
    Cluster,
    EnvClusters,
    GrayRule,
    GrayRules,
    Item,
    Namespace,
    NamespaceLock,
    Release,
)

__all__ = [
    "ApolloOpenApiClient",
    "App",
    "AppNamespace",
    "Audit",
    "Cluster",
    "EnvClusters",
    "GrayRule",
    "GrayRules",
    "Item",
    "Namespace",
    "NamespaceLock",
    "NamespaceLockedError",
    "OpenApiAuthError",
    "OpenApiBadRequestError",
    "OpenApiConflictError",
    "OpenApiError",
    "OpenApiForbiddenError",
    "OpenApiNotFoundError",
    "OpenApiRateLimitedError",
    "OpenApiServerError",
    "OpenApiUnsupportedError",
    "PublishNotAllowedError",
    "Release",
]

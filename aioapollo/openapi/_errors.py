"""Errors of the portal OpenAPI client, under the library's one root, :class:`ApolloError`.

::

    ApolloError
    ├── ApolloConnectionError        the portal could not be reached (refused, DNS, TLS)
    │   └── ApolloTimeoutError       ... or did not answer within ``timeout``
    ├── ApolloResponseError          a reply that is not what the portal sends
    └── ApolloHTTPStatusError
        └── OpenApiError                         the portal refused (.status, .url, .operation,
            │                                    .server_message, .exception)
            ├── OpenApiBadRequestError (ValueError)       400: the request broke a portal rule
            │   ├── NamespaceLockedError                  another editor holds the lock
            │   └── PublishNotAllowedError                the editor may not publish (lock rule)
            ├── OpenApiAuthError (ApolloAuthError)        401: the token is wrong or missing
            ├── OpenApiForbiddenError (PermissionError)   403: the token has no grant for it
            ├── OpenApiNotFoundError (ApolloNotFoundError) 404: no such app/namespace/item/...
            ├── OpenApiUnsupportedError                   the portal is too old for the operation
            ├── OpenApiConflictError                      409
            ├── OpenApiRateLimitedError                   429: the token's rate limit
            └── OpenApiServerError                        5xx

Messages carry the portal's own message (it names apps, namespaces and keys, never values) and
never the token.
"""

from __future__ import annotations

from typing import Any

from .._exceptions import ApolloAuthError, ApolloHTTPStatusError, ApolloNotFoundError

__all__ = [
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
]


class OpenApiError(ApolloHTTPStatusError):
    """The portal answered an OpenAPI request with an error status.

    Attributes:
        status: The HTTP status code.
        url: The request URL without its query string.
        operation: The OpenAPI ``operationId`` (e.g. ``createRelease``).
        server_message: The ``message`` of the portal's error body, if it sent one.
        exception: The Java exception class the portal named, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        url: str,
        operation: str,
        server_message: str | None = None,
        exception: str | None = None,
    ) -> None:
        ApolloHTTPStatusError.__init__(self, message, status=status, url=url)
        self.operation = operation
        self.server_message = server_message
        self.exception = exception


class OpenApiBadRequestError(OpenApiError, ValueError):
    """400: the portal refused the request (a missing field, an app that does not exist, ...)."""


class NamespaceLockedError(OpenApiBadRequestError):
    """The namespace lock is on and another editor has unpublished changes in the namespace.

    Attributes:
        locked_by: The editor holding the lock (as the portal named them).
    """

    def __init__(self, message: str, *, locked_by: str | None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.locked_by = locked_by


class PublishNotAllowedError(OpenApiBadRequestError):
    """The namespace lock is on and the operator edited the namespace, so it may not publish
    it too (Apollo's four-eyes rule); another operator, or an emergency publish, may."""


class OpenApiAuthError(OpenApiError, ApolloAuthError):
    """401: the portal does not know the token (wrong, revoked or missing)."""

    def __init__(self, message: str, **kwargs: object) -> None:
        OpenApiError.__init__(self, message, **kwargs)  # type: ignore[arg-type]
        self.reason = "token"


class OpenApiForbiddenError(OpenApiError, PermissionError):
    """403: the token is valid but has no grant for this app, namespace or action."""


class OpenApiNotFoundError(OpenApiError, ApolloNotFoundError):
    """404: the app, cluster, namespace, item or release does not exist."""

    def __init__(self, message: str, **kwargs: object) -> None:
        OpenApiError.__init__(self, message, **kwargs)  # type: ignore[arg-type]
        self.app_id = self.cluster = self.data_center = self.namespace = None


class OpenApiUnsupportedError(OpenApiError):
    """The portal has no such operation: it predates it (the operation came with a later portal)."""


class OpenApiConflictError(OpenApiError):
    """409: the request conflicts with the portal's state."""


class OpenApiRateLimitedError(OpenApiError):
    """429: the token's rate limit was hit. Reads and idempotent updates are retried first,
    after the reply's ``Retry-After`` when it gives one (up to ``retry_after_max``).

    Attributes:
        retry_after: Seconds the portal asked to wait (``Retry-After``), if it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class OpenApiServerError(OpenApiError):
    """5xx: the portal (or a proxy in front of it) failed."""

"""What the route handlers need of the server: a structural type, so the routes never import
the server module that imports them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from .._longpoll import LongPollHub
from .._models import Fault, OpenApiExchange, RecordedRequest
from .._portal import PortalState
from .._store import ReleaseStore

__all__ = ["ServerView"]


class ServerView(Protocol):
    """The parts of ``ApolloTestServer`` the routes use."""

    hold_seconds: float
    incremental_sync: bool
    time_tolerance_seconds: float
    clock: Callable[[], int]
    openapi_observer: Callable[[OpenApiExchange], None] | None

    @property
    def store(self) -> ReleaseStore: ...
    @property
    def portal(self) -> PortalState: ...
    @property
    def hub(self) -> LongPollHub: ...
    @property
    def closing(self) -> bool: ...
    @property
    def url(self) -> str: ...
    @property
    def control_token(self) -> str | None: ...
    @property
    def requests(self) -> list[RecordedRequest]: ...
    @property
    def faults(self) -> list[Fault]: ...
    @property
    def config_services(self) -> list[str]: ...
    @config_services.setter
    def config_services(self, urls: Iterable[str] | None) -> None: ...

    def publish(
        self,
        app_id: str,
        namespace: str,
        data: Mapping[str, str] | str,
        *,
        cluster: str = ...,
        public: bool = ...,
        gray_ips: Iterable[str] | None = ...,
        gray_labels: Iterable[str] | None = ...,
        gray_client_app_id: str | None = ...,
    ) -> str: ...
    def delete_release(self, app_id: str, namespace: str, cluster: str = ...) -> None: ...
    def clear_gray(self, app_id: str, namespace: str, cluster: str = ...) -> None: ...
    def create_namespace(self, app_id: str, namespace: str, *, public: bool = ...) -> str: ...
    def set_secret(self, app_id: str, secret: str | Iterable[str] | None) -> None: ...
    def add_fault(self, fault: Fault) -> Fault: ...
    def clear_faults(self) -> None: ...
    def clear_requests(self) -> None: ...

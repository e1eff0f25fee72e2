"""Starlette / FastAPI integration: start the client in the ASGI lifespan, inject it per request.

::

    apollo = ApolloClient("my-app", config_server="http://apollo:8080")  # inert at import
    app = FastAPI(lifespan=apollo_lifespan(apollo))

    @app.get("/greeting")
    async def greeting(cfg: ApolloDep) -> dict[str, str | None]:
        return {"greeting": await cfg.get("greeting")}

The lifespan runs inside each worker's own event loop, after any fork, so the client polls in
every worker, under ``gunicorn --preload`` too. Needs Starlette (``aioapollo-client[starlette]``);
:data:`ApolloDep` also needs FastAPI (``aioapollo-client[fastapi]``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

try:
    from starlette.requests import HTTPConnection
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "aioapollo.integrations.starlette needs Starlette: "
        "pip install 'aioapollo-client[starlette]' "
        "(or 'aioapollo-client[fastapi]' for a FastAPI app)"
    ) from exc

from .._client import ApolloClient, ClientState
from .._exceptions import ClientStateError

# ApolloDep is left out of __all__: it needs FastAPI, and a star import must not.
__all__ = ["APOLLO_STATE_KEY", "ApolloLifespan", "apollo_lifespan", "get_apollo"]

#: The lifespan-state key the client is published under unless told otherwise.
APOLLO_STATE_KEY = "apollo"

#: A client, or a zero-argument callable that builds a fresh one for each lifespan run.
ClientOrFactory: TypeAlias = ApolloClient | Callable[[], ApolloClient]
#: A Starlette lifespan: ``app -> async context manager`` yielding an optional state mapping.
UserLifespan: TypeAlias = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]


class ApolloLifespan:
    """A Starlette/FastAPI ``lifespan`` that runs an :class:`ApolloClient`; see
    :func:`apollo_lifespan`."""

    def __init__(
        self,
        client: ClientOrFactory,
        *,
        key: str = APOLLO_STATE_KEY,
        lifespan: UserLifespan | None = None,
    ) -> None:
        if not isinstance(client, ApolloClient) and not callable(client):
            raise TypeError("apollo_lifespan() takes an ApolloClient or a callable returning one")
        if not isinstance(key, str) or not key:
            raise TypeError("the lifespan-state key must be a non-empty string")
        self._client = client
        self._key = key
        self._lifespan = lifespan

    @property
    def key(self) -> str:
        """The lifespan-state key the client is published under."""
        return self._key

    def __call__(self, app: Any) -> AbstractAsyncContextManager[dict[str, Any]]:
        """Starlette calls this once per app run with the app; returns the context manager."""
        return self._run(app)

    @contextlib.asynccontextmanager
    async def _run(self, app: Any) -> AsyncIterator[dict[str, Any]]:
        client = self._resolve()
        owned = await _start(client)
        try:
            state: dict[str, Any] = {self._key: client}
            if self._lifespan is None:
                yield state
            else:
                async with self._lifespan(app) as user_state:
                    yield {**state, **(user_state or {})}
        finally:
            if owned:
                await client.aclose()

    def _resolve(self) -> ApolloClient:
        if isinstance(self._client, ApolloClient):
            return self._client
        client = self._client()
        if not isinstance(client, ApolloClient):
            raise TypeError(
                f"the client factory returned {type(client).__name__}, not an ApolloClient"
            )
        return client


async def _start(client: ApolloClient) -> bool:
    """Start ``client`` in this process; True when this lifespan owns (and so closes) it."""
    try:
        await client.start()
    except ClientStateError:
        if client.state in (ClientState.STARTING, ClientState.RUNNING):
            return False  # started by its owner in this process: leave closing to them
        if client.state is ClientState.CLOSED:
            raise ClientStateError(
                "this ApolloClient was closed by an earlier lifespan run and cannot be reopened; "
                "to run the app's lifespan more than once (e.g. one TestClient per test), pass "
                "a factory: apollo_lifespan(lambda: ApolloClient(...))"
            ) from None
        raise
    return True


def apollo_lifespan(
    client: ClientOrFactory,
    *,
    key: str = APOLLO_STATE_KEY,
    lifespan: UserLifespan | None = None,
) -> ApolloLifespan:
    """A lifespan that starts ``client`` in the worker's loop and yields it as lifespan state.

    Use it as ``FastAPI(lifespan=apollo_lifespan(client))`` or
    ``Starlette(lifespan=apollo_lifespan(client))``. At startup it awaits
    ``client.start()`` (every namespace is loaded before the first request is served); at
    shutdown it closes the client. A client that is already running in this process was
    started by someone else and is neither restarted nor closed. A client inherited from a
    parent process (``gunicorn --preload``) is started afresh here, keeping the inherited
    values as warm data.

    Args:
        client: The client, or a zero-argument factory that builds a fresh client for each run
            of the lifespan (a closed client cannot be reopened, so use a factory when the
            lifespan may run more than once in one process, as in tests).
        key: The lifespan-state key; ``request.state[key]`` is the client.
        lifespan: Your own lifespan, entered after the client has started (it may read
            config) and exited before the client closes; its state is merged in.

    Returns:
        A callable ``app -> async context manager`` to pass as ``lifespan=``. It can also be
        entered from your own lifespan, e.g. ``await stack.enter_async_context(
        apollo_lifespan(client)(app))`` with an :class:`contextlib.AsyncExitStack`.
    """
    return ApolloLifespan(client, key=key, lifespan=lifespan)


def get_apollo(conn: HTTPConnection) -> ApolloClient:
    """The :class:`ApolloClient` published by :func:`apollo_lifespan`, for a request or websocket.

    Looks under ``"apollo"`` in the lifespan state, or, when nothing is there, for the one
    ApolloClient in the state (so a custom ``key`` needs no extra argument). Works as a FastAPI
    dependency (see :data:`ApolloDep`) and from plain Starlette endpoints.

    Raises:
        RuntimeError: No client (or more than one under other keys) is in the lifespan state.
    """
    state: Mapping[str, Any] = conn.scope.get("state") or {}
    client = state.get(APOLLO_STATE_KEY)
    if isinstance(client, ApolloClient):
        return client
    found = sorted(k for k, v in state.items() if isinstance(v, ApolloClient))
    if len(found) == 1:
        return state[found[0]]  # type: ignore[no-any-return]
    if found:
        raise RuntimeError(
            f"several ApolloClients are in the lifespan state ({', '.join(found)}): "
            "read the one you want with request.state[key]"
        )
    raise RuntimeError(
        "no ApolloClient in the lifespan state: create the app with "
        "lifespan=apollo_lifespan(client), or yield {'apollo': client} from your own lifespan"
    )


if TYPE_CHECKING:
    from fastapi import Depends

    #: ``Annotated[ApolloClient, Depends(get_apollo)]``: annotate an endpoint parameter with it.
    ApolloDep: TypeAlias = Annotated[ApolloClient, Depends(get_apollo)]
else:

    def __getattr__(name: str) -> Any:
        # ApolloDep needs FastAPI, which a Starlette-only app does not have: build it on use.
        if name != "ApolloDep":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        try:
            from fastapi import Depends
        except ImportError as exc:
            raise ImportError(
                "ApolloDep needs FastAPI: pip install 'aioapollo-client[fastapi]' (Starlette apps "
                "call get_apollo(request) instead)"
            ) from exc
        dep = Annotated[ApolloClient, Depends(get_apollo)]
        globals()["ApolloDep"] = dep
        return dep

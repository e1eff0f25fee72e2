"""Errors name their cause: what was asked for, where, why it failed, and what to check.

Everything runs against real servers on loopback: the Apollo test server, a plain aiohttp
server that is not Apollo at all, and a port that refuses connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiohttp import web

from aioapollo import (
    ApolloClient,
    ApolloConnectionError,
    ApolloHTTPStatusError,
    ApolloNotFoundError,
    ApolloResponseError,
    ErrorEvent,
    Hooks,
    NamespaceUnavailableError,
    Source,
)
from aioapollo._apollo.cache import DiskCache
from aioapollo._cli.main import EXIT_UNAVAILABLE, EXIT_USAGE, main
from aioapollo.testing import ApolloTestServer

from ..conftest import APP, ClientFactory

PASSWORD = "CANARY-PW-7f3a"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A loopback URL that refuses connections: its port stays bound but never listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.asynccontextmanager
async def plain_server(handler: Handler | None = None) -> AsyncIterator[str]:
    """A real aiohttp server that is not Apollo; without ``handler`` it answers 404 to all."""
    app = web.Application()
    if handler is not None:
        app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def _html(request: web.Request) -> web.Response:
    return web.Response(
        text="<html><body>Welcome to nginx!</body></html>", content_type="text/html"
    )


async def _json_object(request: web.Request) -> web.Response:
    return web.json_response({"status": "UP"})


async def start_fails(client: ApolloClient) -> NamespaceUnavailableError:
    with pytest.raises(NamespaceUnavailableError) as info:
        await client.start()
    return info.value


def everything_shown(error: BaseException) -> str:
    """The message, the repr and the formatted chain: all a user could ever see of it."""
    return "\n".join([str(error), repr(error), "".join(traceback.format_exception(error))])


# ---------------------------------------------------------------------------- 404 at start


async def test_404_names_app_cluster_namespace_and_what_to_check(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    error = await start_fails(make_client(app_id="wrong-app", cache_dir=None))
    cause = error.causes["application"]
    assert isinstance(cause, ApolloNotFoundError)
    assert (cause.app_id, cause.cluster, cause.namespace, cause.data_center) == (
        "wrong-app",
        "default",
        "application",
        None,
    )
    assert cause.url == f"{server.url}/configs/wrong-app/default/application"
    text = str(error)
    for part in (
        f"{server.url}/configs/wrong-app/default/application: not found (404)",
        "namespace 'application'",
        "app id 'wrong-app'",
        "cluster 'default'",
        "app id and cluster are spelled right",
        "namespace exists and has been released",
        "config_server= / APOLLO_CONFIG_SERVICE points at the right environment",
    ):
        assert part in text, text
    assert "/.../" not in text and "data center" not in text


@pytest.mark.parametrize(
    "body",
    [
        "404: Not Found",  # aiohttp's, Flask's and most frameworks' plain pages
        "<html><head><title>404 Not Found</title></head><body>nginx</body></html>",
        '{"detail": "Not Found"}',  # JSON, but not Spring's or Apollo's error shape
    ],
)
async def test_a_404_that_is_not_apollos_says_so_instead_of_blaming_the_app_id(
    server: ApolloTestServer, make_client: ClientFactory, body: str
) -> None:
    server.inject("/configs/", times=None, status=404, body=body)
    error = await start_fails(make_client(cache_dir=None))
    cause = error.causes["application"]
    assert isinstance(cause, ApolloNotFoundError) and cause.status == 404
    text = str(error)
    assert "the reply does not look like Apollo's" in text, text
    assert "config_server= / APOLLO_CONFIG_SERVICE points at an Apollo config service" in text
    assert "app id" not in text and "released" not in text, text
    assert body not in text  # what the other server said is not repeated


@pytest.mark.parametrize("body", ["", '{"status": 404, "message": "Could not load"}'])
async def test_a_404_shaped_like_apollos_still_names_app_and_namespace(
    server: ApolloTestServer, make_client: ClientFactory, body: str
) -> None:
    server.inject("/configs/", times=None, status=404, body=body)
    text = str(await start_fails(make_client(cache_dir=None)))
    assert "no release of namespace 'application'" in text and "does not look" not in text


async def test_404_names_the_data_center_and_hides_url_credentials(
    server: ApolloTestServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aioapollo")
    url = server.url.replace("http://", f"http://ops:{PASSWORD}@")
    client = make_client(
        app_id="wrong-app", config_server=url, cluster="east", data_center="dc1", cache_dir=None
    )
    error = await start_fails(client)
    cause = error.causes["application"]
    assert isinstance(cause, ApolloNotFoundError) and cause.data_center == "dc1"
    shown = everything_shown(error)
    assert "app id 'wrong-app', cluster 'east', data center 'dc1'" in shown
    assert f"{server.url}/configs/wrong-app/east/application" in shown
    assert server.requests[-1].headers["Authorization"].startswith("Basic ")  # it was used
    for text in (shown, caplog.text):
        assert PASSWORD not in text and "ops@" not in text


async def test_404_through_discovery_says_to_check_the_meta_server(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    client = make_client(app_id="wrong-app", config_server=None, meta_server=server.url)
    error = await start_fails(client)
    assert isinstance(error.causes["application"], ApolloNotFoundError)
    assert "meta_server= / APOLLO_META points at the right environment" in str(error)


# ------------------------------------------------------------- discovery that finds nothing


@pytest.mark.parametrize(
    ("handler", "reason", "cause_type"),
    [
        (None, "/services/config: HTTP 404 (is it an Apollo meta server?)", ApolloHTTPStatusError),
        (_html, "/services/config: reply is not valid JSON (", ApolloResponseError),
        (_json_object, "/services/config: reply is not a JSON array", ApolloResponseError),
    ],
    ids=["404", "html", "json-object"],
)
async def test_a_meta_server_that_is_not_one_is_named_with_the_reason(
    make_client: ClientFactory, handler: Handler | None, reason: str, cause_type: type
) -> None:
    async with plain_server(handler) as meta:
        error = await start_fails(make_client(config_server=None, meta_server=meta))
    cause = error.causes["application"]
    assert isinstance(cause, ApolloConnectionError)
    assert isinstance(cause.__cause__, cause_type)  # the reply's own error stays in the chain
    text = str(error)
    assert f"service discovery found no config service: {meta}{reason}" in text, text
    assert "meta_server= / APOLLO_META" in text
    assert "never released" not in text and "no config service is known" not in text


async def test_a_meta_server_listing_no_usable_service_says_so(make_client: ClientFactory) -> None:
    async with ApolloTestServer(config_services=[]) as meta:
        error = await start_fails(make_client(config_server=None, meta_server=meta.url))
    assert f"{meta.url}/services/config: lists no config service" in str(error)


async def _unusable_services(request: web.Request) -> web.Response:
    urls = ["http://config:80a80/", "ftp://config", None]
    return web.json_response([{"appName": "APOLLO-CONFIGSERVICE", "homepageUrl": u} for u in urls])


async def test_a_listed_url_that_is_no_server_url_is_skipped(make_client: ClientFactory) -> None:
    async with plain_server(_unusable_services) as meta:
        error = await start_fails(make_client(config_server=None, meta_server=meta))
    assert f"{meta}/services/config: lists no config service" in str(error), str(error)


async def test_a_closed_meta_port_says_connection_refused(
    make_client: ClientFactory, refusing_url: str
) -> None:
    error = await start_fails(make_client(config_server=None, meta_server=refusing_url))
    assert f"{refusing_url}/services/config: connection refused" in str(error), str(error)


async def test_every_meta_server_is_named_once_and_namespaces_share_the_reason(
    make_client: ClientFactory, refusing_url: str
) -> None:
    async with plain_server() as not_meta:
        client = make_client(
            config_server=None,
            meta_server=[not_meta, refusing_url],
            namespaces=["application", "db.json"],
        )
        error = await start_fails(client)
    text = str(error)
    assert error.namespaces == ("application", "db.json")
    assert text.count(f"{not_meta}/services/config: HTTP 404") == 1, text
    assert text.count(f"{refusing_url}/services/config: connection refused") == 1, text
    assert "'application', 'db.json': ApolloConnectionError: service discovery" in text


async def test_meta_server_credentials_never_show(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aioapollo")
    async with plain_server(_html) as meta:
        url = meta.replace("http://", f"http://ops:{PASSWORD}@")
        error = await start_fails(make_client(config_server=None, meta_server=url))
    shown = everything_shown(error)
    assert f"{meta}/services/config: reply is not valid JSON" in shown
    assert "service discovery" in caplog.text  # logged too, at WARNING
    for text in (shown, caplog.text):
        assert PASSWORD not in text and "ops@" not in text


async def test_a_warm_cache_is_served_and_the_discovery_reason_logged(
    server: ApolloTestServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with plain_server() as not_meta:
        # A warm cache for this very client (cache files are keyed by the servers asked).
        client = make_client(config_server=None, meta_server=not_meta)
        cache = DiskCache.for_options(client.options)
        assert cache is not None
        cache.save("application", "rk-1", {"greeting": "hello"}, time.time())
        async with client:
            assert client.sources["application"] is Source.CACHE
            assert await client.get("greeting") == "hello"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    reason = f"{not_meta}/services/config: HTTP 404 (is it an Apollo meta server?)"
    assert any("from the local cache" in w and reason in w for w in warnings), warnings


async def test_a_closed_config_service_port_says_connection_refused(
    make_client: ClientFactory, refusing_url: str
) -> None:
    error = await start_fails(make_client(config_server=refusing_url, cache_dir=None))
    assert isinstance(error.causes["application"], ApolloConnectionError)
    assert (
        f"{refusing_url}/configs/{APP}/default/application: connection refused "
        "(ClientConnectorError)" in str(error)
    ), str(error)


# ---------------------------------------------------------------------- the long poll


class _Errors(Hooks):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[ErrorEvent] = asyncio.Queue()

    def on_error(self, event: ErrorEvent) -> None:
        self.queue.put_nowait(event)


async def test_a_404_to_the_long_poll_does_not_blame_a_release(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    errors = _Errors()
    server.inject("/notifications/v2", status=404, body=json.dumps({"status": 404}))
    async with make_client(hooks=[errors]):
        async with asyncio.timeout(5):
            event = await errors.queue.get()
    assert event.operation == "poll"
    assert isinstance(event.error, ApolloNotFoundError)
    text = str(event.error)
    assert f"{server.url}/notifications/v2: not found (404)" in text
    assert "is this an Apollo config service?" in text and "released" not in text


# ---------------------------------------------------------------------- the command line


def test_cli_exit_codes_follow_the_error_types(
    refusing_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed URL is a configuration error (2); a failed discovery is "unreachable" (3)."""
    argv = ["get", "k", "--app-id", APP]
    assert main([*argv, "--config-server", "http://127.0.0.1:80a80"]) == EXIT_USAGE
    assert "port '80a80' is not a number from 1 to 65535" in capsys.readouterr().err
    assert main([*argv, "--meta-server", refusing_url, "--timeout", "5"]) == EXIT_UNAVAILABLE
    assert f"{refusing_url}/services/config: connection refused" in capsys.readouterr().err

"""The options that bound fault handling are validated, and unreachable services go last."""

from __future__ import annotations

import ssl
import time

import pytest

from aioapollo import ApolloClient, ClientOptions
from aioapollo._apollo.discovery import ServicePool
from aioapollo._apollo.transport import Transport

URL = "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"poll_timeout": 30}, ValueError, "60 s long-poll hold"),
        ({"poll_timeout": 1.0, "server_hold": 1.0}, ValueError, "server_hold"),
        ({"server_hold": 0}, ValueError, "server_hold"),
        ({"max_body_bytes": 0}, ValueError, "max_body_bytes"),
        ({"ssl": "yes"}, TypeError, "SSLContext"),
        (
            {"config_server": "http://u:p@127.0.0.1:8080", "secret": "s"},
            ValueError,
            "Authorization",
        ),
    ],
)
def test_fault_options_are_validated(options: dict, error: type, message: str) -> None:
    options.setdefault("config_server", URL)
    with pytest.raises(error, match=message) as info:
        ApolloClient("app", **options)
    assert ":p@" not in str(info.value)


def test_short_poll_timeout_needs_an_explicitly_short_server_hold() -> None:
    options = ApolloClient("app", config_server=URL, server_hold=0.5, poll_timeout=1.5).options
    assert (options.server_hold, options.poll_timeout) == (0.5, 1.5)
    defaults = ClientOptions(app_id="app", config_servers=(URL,))
    assert defaults.poll_timeout > defaults.server_hold == 60
    ApolloClient("app", config_server=URL, ssl=ssl.create_default_context())


def test_unreachable_services_go_last_then_come_back() -> None:
    urls = [f"http://10.0.0.{n}:8080" for n in range(1, 4)]
    cooldown = 0.001  # min(backoff_max, 30)
    options = ClientOptions(app_id="app", config_servers=tuple(urls), backoff_max=cooldown)
    pool = ServicePool(options, Transport(options))
    pool.mark_unreachable(urls[0])
    over = time.monotonic() + cooldown  # the cooldown ends at or before this instant
    pool.mark_unreachable("http://not-listed:1")  # ignored
    # Wait for the end of the cooldown on the clock it is measured with (a fast interpreter
    # gets here well within 1 ms); then all three are healthy again and each can come first.
    while (left := over - time.monotonic()) >= 0:
        time.sleep(left)
    assert {pool.ordered()[0] for _ in range(60)} == set(urls)

    options = ClientOptions(app_id="app", config_servers=tuple(urls))
    pool = ServicePool(options, Transport(options))
    pool.mark_unreachable(urls[0])
    for _ in range(30):
        assert pool.ordered()[-1] == urls[0]
        assert pool.ordered(prefer=urls[0])[0] == urls[0]  # an explicit preference wins
        pool.drop_poll_service()
        assert pool.poll_service() != urls[0]
    for url in urls[1:]:
        pool.mark_unreachable(url)
    pool.drop_poll_service()
    assert pool.poll_service() in urls  # all unreachable: still pick one rather than none

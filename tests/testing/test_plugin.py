"""The pytest plugin: here, in a strict-mode project, and without pytest-asyncio."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from aioapollo.testing import ApolloTestServer

from .conftest import Http

USER_TESTS = """
import asyncio

import aiohttp
import pytest

SEEN = []


@pytest.mark.asyncio
async def test_server_fixture(apollo_server):
    assert apollo_server.hold_seconds == 0.5
    apollo_server.publish("app", "application", {"k": "v"})
    async with aiohttp.ClientSession() as session:
        async with session.get(apollo_server.url + "/configs/app/default/application") as resp:
            assert (await resp.json())["configurations"] == {"k": "v"}
    SEEN.append(apollo_server)


@pytest.mark.asyncio
async def test_factory(apollo_server, apollo_server_factory):
    second = await apollo_server_factory(store=apollo_server.store)
    assert second.url != apollo_server.url and second.hold_seconds == 0.5
    SEEN.extend([apollo_server, second])


@pytest.mark.apollo
def test_servers_were_closed():
    assert len(SEEN) == 3
    for server in SEEN:
        with pytest.raises(RuntimeError, match="closed"):
            asyncio.run(server.start())
"""

INI = """
[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
filterwarnings = error
addopts = --strict-markers -p no:cacheprovider
"""


def run_pytest(
    tmp_path: Path, code: str, *, ini: str = INI, without_pytest_asyncio: bool = False
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text(ini, encoding="utf-8")
    (tmp_path / "test_user.py").write_text(code, encoding="utf-8")
    env = dict(os.environ)
    args = ["-q"]
    if without_pytest_asyncio:
        # A stub first on sys.path that fails to import, as if pytest-asyncio were missing.
        stub = tmp_path / "stubs" / "pytest_asyncio"
        stub.mkdir(parents=True)
        (stub / "__init__.py").write_text("raise ImportError('not installed')\n")
        env["PYTHONPATH"] = str(tmp_path / "stubs")
        args += ["-p", "no:asyncio"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_fixtures_in_this_suite(
    apollo_server: ApolloTestServer,
    apollo_server_factory: Callable[..., object],
    http: Http,
) -> None:
    assert apollo_server.hold_seconds == 0.5
    other = await apollo_server_factory(hold_seconds=2)  # type: ignore[misc]
    assert isinstance(other, ApolloTestServer)
    assert other.hold_seconds == 2
    assert (await http.get(f"{other.url}/services/config")).status == 200


def test_plugin_in_a_strict_mode_project(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, USER_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_plugin_without_pytest_asyncio(tmp_path: Path) -> None:
    code = "def test_needs_server(apollo_server):\n    pass\n\n\ndef test_other():\n    pass\n"
    ini = "[pytest]\nfilterwarnings = error\naddopts = -p no:cacheprovider\n"
    result = run_pytest(tmp_path, code, ini=ini, without_pytest_asyncio=True)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "1 passed, 1 error" in output
    assert "needs pytest-asyncio: pip install pytest-asyncio (a plain" in output
    assert "[test]" not in output  # the project's test extra builds uWSGI: not the hint
    assert "'apollo_server_thread' instead" in output


SYNC_TESTS = """
import json
import threading
import urllib.request

from fastapi import FastAPI
from fastapi.testclient import TestClient

from aioapollo import SyncApolloClient
from aioapollo.integrations.starlette import ApolloDep, apollo_lifespan
from aioapollo import ApolloClient


def get(url):
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read())


def test_plain_http(apollo_server_thread):
    apollo_server_thread.publish("app", "application", {"k": "v"})
    reply = get(apollo_server_thread.url + "/configs/app/default/application")
    assert reply["configurations"] == {"k": "v"}


def test_starlette_testclient(apollo_server_thread):
    apollo_server_thread.publish("app", "application", {"greeting": "hi"})
    client = ApolloClient("app", config_server=apollo_server_thread.url, cache_dir=None)
    app = FastAPI(lifespan=apollo_lifespan(client))

    @app.get("/")
    async def index(cfg: ApolloDep):
        return {"greeting": await cfg.get("greeting")}

    with TestClient(app) as http:  # the app's loop runs on TestClient's own thread
        assert http.get("/").json() == {"greeting": "hi"}


def test_sync_client_follows_a_release(apollo_server_thread):
    apollo_server_thread.publish("app", "application", {"k": "1"})
    heard = threading.Event()
    with SyncApolloClient("app", config_server=apollo_server_thread.url, cache_dir=None) as cfg:
        cfg.on_change(lambda event: heard.set())
        assert cfg.get("k") == "1"
        apollo_server_thread.publish("app", "application", {"k": "2"})
        assert heard.wait(10)
        assert cfg.get("k") == "2"
"""


def test_the_thread_fixture_serves_sync_tests(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, SYNC_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_the_thread_fixture_needs_no_pytest_asyncio(tmp_path: Path) -> None:
    ini = "[pytest]\nfilterwarnings = error\naddopts = -p no:cacheprovider\n"
    code = SYNC_TESTS.split("def test_starlette_testclient")[0]
    result = run_pytest(tmp_path, code, ini=ini, without_pytest_asyncio=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


SYNC_TEST_ASKS_FOR_THE_LOOP_SERVER = """
import urllib.request

import pytest


@pytest.fixture
async def published(apollo_server):  # an async fixture, requested by a sync test
    apollo_server.publish("app", "application", {"k": "v"})
    return apollo_server


def test_direct(apollo_server):
    url = apollo_server.url + "/configs/app/default/application"
    urllib.request.urlopen(url, timeout=3).close()


def test_through_a_fixture(published):
    url = published.url + "/configs/app/default/application"
    urllib.request.urlopen(url, timeout=3).close()


def test_factory(apollo_server_factory):
    pass
"""


def test_a_sync_test_asking_for_the_loop_server_fails_at_once_naming_the_thread_one(
    tmp_path: Path,
) -> None:
    # It used to wait for its requests to time out, blaming Apollo: the loop stood still.
    ini = INI.replace("asyncio_mode = strict", "asyncio_mode = auto")
    result = run_pytest(tmp_path, SYNC_TEST_ASKS_FOR_THE_LOOP_SERVER, ini=ini)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "3 errors" in output, output
    assert "TimeoutError" not in output and "timed out" not in output, output
    for test, fixture in [
        ("test_direct", "apollo_server"),
        ("test_through_a_fixture", "apollo_server"),
        ("test_factory", "apollo_server_factory"),
    ]:
        assert f"{test} is a plain `def` test, and the aioapollo fixture {fixture!r}" in output
    # Once per error (pytest repeats it in the short summary when CI is set: 6 then).
    assert output.count("Use 'apollo_server_thread'") in (3, 6), output

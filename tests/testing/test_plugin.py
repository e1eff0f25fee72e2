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
    assert "needs pytest-asyncio" in output

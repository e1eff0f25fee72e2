"""``python -m aioapollo serve``: a real subprocess, seeded from YAML, driven over HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aioapollo import ApolloClient
from aioapollo._cli.common import EXIT_USAGE
from aioapollo._cli.main import EXIT_AUTH, EXIT_OK, build_parser, main

from .._support import free_port
from ..conftest import FAST, Events

SEED = """
apps:
  SampleApp:
    namespaces:
      application:
        greeting: hello-seeded-value
        timeout: 30
"""


def call(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, None


def test_serve_subprocess(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    seed = tmp_path / "seed.yaml"
    seed.write_text(SEED, encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "aioapollo", "serve", "--port", str(port), "--data", str(seed)]
    command += ["--hold-seconds", "1"]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 20
        while True:  # wait for the port: bounded polling of the health endpoint
            try:
                if call(f"{url}/__aioapollo__/health")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.05)
        status, config = call(f"{url}/configs/SampleApp/default/application")
        assert status == 200
        assert config["configurations"] == {"greeting": "hello-seeded-value", "timeout": "30"}
        status, published = call(
            f"{url}/__aioapollo__/publish",
            {"appId": "SampleApp", "namespace": "application", "items": {"greeting": "new-value"}},
        )
        assert status == 200
        status, config = call(f"{url}/configs/SampleApp/default/application")
        assert (config["releaseKey"], config["configurations"]) == (
            published["releaseKey"],
            {"greeting": "new-value"},
        )
        assert call(f"{url}/services/config")[1][0]["homepageUrl"] == f"{url}/"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert f"aioapollo test server ready on {url}" in stdout
    assert stderr.count("published SampleApp+default+application") == 2
    assert "hello-seeded-value" not in stderr
    assert "new-value" not in stderr


def test_serve_reports_bad_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)  # keep root logging as is
    bad = tmp_path / "seed.json"
    bad.write_text('{"apps": {"a": {"namespaces": {"application": "text"}}}}', encoding="utf-8")
    assert main(["serve", "--port", "0", "--data", str(bad)]) == 2
    assert "non-properties" in capsys.readouterr().err


def test_parser_has_serve_and_needs_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["serve", "--port", "9", "--hold-seconds", "0.5"])
    assert (args.command, args.port, args.hold_seconds, args.host) == ("serve", 9, 0.5, "127.0.0.1")
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_serve_help_points_at_the_seed_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    text = capsys.readouterr().out
    assert "docs/testing.md" in " ".join(text.split())
    assert "README" not in text


# ------------------------------------------------------------ serve as a real process


class Serve:
    """``python -m aioapollo serve`` in a subprocess, waited for through its --ready-file."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.dir = tmp_path / f"serve-{time.monotonic_ns()}"
        self.dir.mkdir()
        self.ready = self.dir / "ready"
        self.args = [*args, "--ready-file", str(self.ready)]
        self.env = {k: v for k, v in os.environ.items() if k != "AIOAPOLLO_CONTROL_TOKEN"}
        self.env.update(env or {})
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def __aenter__(self) -> Serve:
        with (self.dir / "out").open("wb") as out, (self.dir / "err").open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "aioapollo",
                "serve",
                *self.args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.env,
            )
        deadline = time.monotonic() + 30
        while not self.ready.exists():  # another process: poll, bounded
            assert self.proc.returncode is None, self.stderr
            assert time.monotonic() < deadline, f"serve did not become ready:\n{self.stderr}"
            await asyncio.sleep(0.02)
        self.url = self.ready.read_text("utf-8").strip()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def stdout(self) -> str:
        return (self.dir / "out").read_text("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return (self.dir / "err").read_text("utf-8", "replace")

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                return await self.proc.wait()
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with aiohttp.ClientSession() as http:
            url = f"{self.url}/__aioapollo__/{path}"
            async with http.request(method, url, json=body) as reply:
                assert reply.status == 200, await reply.text()
                return await reply.json()

    async def publish(self, items: dict[str, str]) -> str:
        body = {"appId": "SampleApp", "namespace": "application", "items": items}
        key: str = (await self.control("POST", "publish", body))["releaseKey"]
        return key

    async def wait_held(self, count: int = 1) -> None:
        deadline = time.monotonic() + 20
        while (await self.control("GET", "health"))["heldPolls"] < count:
            assert time.monotonic() < deadline, "no client is long-polling"
            await asyncio.sleep(0.02)


async def test_serve_is_ready_once_listening(tmp_path: Path) -> None:
    async with Serve(tmp_path, "--port", "0") as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.ready.read_text("utf-8") == server.url + "\n"
        assert server.stdout.splitlines() == [f"aioapollo test server ready on {server.url}"]
        assert (await server.control("GET", "health"))["status"] == "UP"
        assert await server.stop() == 0
    assert not server.ready.exists()  # gone with the server: a stale file never looks ready


async def test_serve_off_loopback_generates_and_prints_a_token_once(tmp_path: Path) -> None:
    async with Serve(tmp_path, "--port", "0", "--host", "0.0.0.0") as server:
        (line, ready) = server.stdout.splitlines()
        assert line.startswith("control token for ") and "AIOAPOLLO_CONTROL_TOKEN" in line
        token = line.rsplit(" ", 1)[-1]
        assert len(token) >= 20
        assert ready == f"aioapollo test server ready on {server.url}"
        argv = ["publish", "--server", server.url, "--app-id", "a", "k=v"]
        assert await asyncio.to_thread(main, argv) == EXIT_AUTH
        assert await asyncio.to_thread(main, [*argv, "--control-token", token]) == EXIT_OK
        assert await server.stop() == 0
    assert token not in server.stderr  # printed once on stdout, never logged


async def test_serve_with_a_given_token_prints_none(tmp_path: Path) -> None:
    env = {"AIOAPOLLO_CONTROL_TOKEN": "given-token-canary"}
    async with Serve(tmp_path, "--port", "0", "--host", "0.0.0.0", env=env) as server:
        assert "control token" not in server.stdout
        async with aiohttp.ClientSession() as http:
            health = f"{server.url}/__aioapollo__/health"
            async with http.get(health) as denied:
                assert denied.status == 401
            headers = {"X-Aioapollo-Control-Token": "given-token-canary"}
            async with http.get(health, headers=headers) as allowed:
                assert allowed.status == 200
    assert "given-token-canary" not in server.stdout + server.stderr


def _client(url: str, events: Events) -> ApolloClient:
    client = ApolloClient("SampleApp", config_server=url, cache_dir=None, **FAST)
    client.on_change(events)
    return client


async def test_a_client_follows_serve_restarted_without_state(tmp_path: Path) -> None:
    port = str(free_port())
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps({"apps": {"SampleApp": {"namespaces": {"application": {"v": "3"}}}}})
    )
    events = Events()
    async with Serve(tmp_path, "--port", port, "--hold-seconds", "30") as first:
        await first.publish({"v": "1"})
        await first.publish({"v": "2"})
        client = _client(first.url, events)
        await client.start()
        await first.wait_held()
    try:
        # Restarted with a release made before it listens: the client's next poll carries the
        # id it had from the first run, and must still be told of it (ids only grow).
        async with Serve(tmp_path, "--port", port, "--hold-seconds", "30", "--data", str(seed)):
            event = await events.next(timeout=15)  # long before the 5-minute refresh
        assert (event.changes["v"].old_value, event.changes["v"].new_value) == ("2", "3")
    finally:
        await client.aclose()


async def test_a_client_follows_serve_restarted_with_its_state(tmp_path: Path) -> None:
    port = str(free_port())
    state = tmp_path / "state.json"
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps({"apps": {"SampleApp": {"namespaces": {"application": {"v": "1"}}}}})
    )
    args = ("--port", port, "--hold-seconds", "30", "--state", str(state), "--data", str(seed))
    events = Events()
    async with Serve(tmp_path, *args) as first:
        key = await first.publish({"v": "2"})
        client = _client(first.url, events)
        await client.start()
        await first.wait_held()
    try:
        async with Serve(tmp_path, *args) as second:
            assert "the seed's apps were not applied" in second.stderr
            await second.wait_held()  # same release, same ids: the client has nothing to fetch
            assert events.seen == []
            assert client.snapshot("application").release_key == key
            await second.publish({"v": "3"})
            event = await events.next(timeout=15)
        assert (event.changes["v"].old_value, event.changes["v"].new_value) == ("2", "3")
    finally:
        await client.aclose()


def test_serve_refuses_a_damaged_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    state = tmp_path / "state.json"
    state.write_text("[1, 2", encoding="utf-8")
    assert main(["serve", "--port", "0", "--state", str(state)]) == EXIT_USAGE
    assert "is not JSON" in capsys.readouterr().err

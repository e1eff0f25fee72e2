"""The ``aioapollo`` command line: through ``main(argv)`` and as real subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from aioapollo._cli import EXIT_AUTH, EXIT_MISSING, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, main
from aioapollo.testing import ApolloTestServer

from .conftest import APP

#: Generous: a subprocess imports aiohttp first, on a machine shared with other test runs.
PROC_TIMEOUT = 30.0


@pytest.fixture
def env(server: ApolloTestServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the CLI at the test server through the environment, as a user would."""
    for name in list(os.environ):
        if name.startswith("APOLLO_") or name in ("APP_ID", "IDC"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("APP_ID", APP)
    monkeypatch.setenv("APOLLO_CONFIG_SERVICE", server.url)
    return {"APP_ID": APP, "APOLLO_CONFIG_SERVICE": server.url}


async def run(*argv: str) -> int:
    """``main(argv)`` in a worker thread: it runs its own event loop, the server runs in ours."""
    return await asyncio.to_thread(main, list(argv))


async def test_get_prints_the_value(env: dict[str, str], capsys: pytest.CaptureFixture) -> None:
    assert await run("get", "greeting") == EXIT_OK
    assert capsys.readouterr().out == "hello\n"


async def test_get_missing_key_exits_1_unless_default(
    env: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    assert await run("get", "nope") == EXIT_MISSING
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "key 'nope' not found in namespace 'application'" in captured.err
    assert await run("get", "nope", "--default", "fallback") == EXIT_OK
    assert capsys.readouterr().out == "fallback\n"


async def test_flags_override_the_environment(
    server: ApolloTestServer, env: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    server.publish("other-app", "ops", {"mode": "blue"}, cluster="east")
    argv = ["get", "mode", "--app-id", "other-app", "--cluster", "east", "--namespace", "ops"]
    assert await run(*argv) == EXIT_OK
    assert capsys.readouterr().out == "blue\n"


async def test_dump_formats(
    server: ApolloTestServer, env: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    server.publish(APP, "odd", {"a key": "x=y\nz", "b": " lead", "c\\d": "1"})
    assert await run("dump", "odd") == EXIT_OK
    assert capsys.readouterr().out == "a\\ key=x=y\\nz\nb=\\ lead\nc\\\\d=1\n"
    assert await run("dump", "--namespace", "odd", "--format", "json") == EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"a key": "x=y\nz", "b": " lead", "c\\d": "1"}
    assert await run("dump") == EXIT_OK
    assert capsys.readouterr().out == "greeting=hello\ntimeout=30\n"


async def test_dump_file_namespace_raw(
    server: ApolloTestServer, env: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    server.publish(APP, "db.json", '{"pool": 5}')
    assert await run("dump", "db.json") == EXIT_OK
    assert capsys.readouterr().out == '{"pool": 5}\n'
    assert await run("dump", "db.json", "--format", "json") == EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"content": '{"pool": 5}'}


@pytest.mark.parametrize(
    "argv",
    [
        ["get"],  # KEY missing
        ["get", "k", "--timeout", "soon"],
        ["get", "k", "--timeout", "0"],
        ["watch", "--count", "0"],
        ["dump", "--format", "xml"],
        ["frobnicate"],
        [],
    ],
)
async def test_usage_errors_exit_2(
    argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    assert await run(*argv) == EXIT_USAGE
    assert "usage: aioapollo" in capsys.readouterr().err


async def test_configuration_errors_exit_2(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("APP_ID")
    assert await run("get", "k") == EXIT_USAGE
    assert capsys.readouterr().err == "aioapollo: error: no appId: set APP_ID or pass --app-id\n"
    monkeypatch.delenv("APOLLO_CONFIG_SERVICE")
    assert await run("dump", "--app-id", "x") == EXIT_USAGE
    assert "set APOLLO_CONFIG_SERVICE (or APOLLO_META)" in capsys.readouterr().err
    assert await run("get", "k", "--app-id", "x", "--config-server", "ftp://h") == EXIT_USAGE
    assert "http://" in capsys.readouterr().err


async def test_unreachable_or_unreleased_exits_3(
    env: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    async with ApolloTestServer() as gone:
        url = gone.url
    assert await run("get", "k", "--config-server", url) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert err.startswith("aioapollo: error: could not load namespace(s) 'application'")
    assert await run("get", "k", "--namespace", "never-released") == EXIT_UNAVAILABLE
    assert "not found" in capsys.readouterr().err


async def test_access_key_errors_exit_4_and_the_secret_stays_hidden(
    server: ApolloTestServer,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    server.set_secret(APP, "right-secret")
    assert await run("get", "greeting") == EXIT_AUTH
    err = capsys.readouterr().err
    assert "401" in err and "APOLLO_ACCESS_KEY_SECRET" in err
    monkeypatch.setenv("APOLLO_ACCESS_KEY_SECRET", "wrong-secret")
    assert await run("get", "greeting", "-vv") == EXIT_AUTH
    assert "wrong-secret" not in str(capsys.readouterr())
    monkeypatch.setenv("APOLLO_ACCESS_KEY_SECRET", "right-secret")
    assert await run("get", "greeting") == EXIT_OK
    assert capsys.readouterr().out == "hello\n"


async def test_watch_prints_old_and_new(
    server: ApolloTestServer, env: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    server.publish(APP, "application", {"greeting": "hello", "gone": "x"})
    watching = asyncio.create_task(run("watch", "--count", "1"))
    async with asyncio.timeout(10):
        await server.wait_for_polls(1)  # a held poll: the watcher is up to date
    server.publish(APP, "application", {"greeting": "hi", "added": "1"})
    async with asyncio.timeout(10):
        assert await watching == EXIT_OK
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        '[application] added: (absent) → "1"',
        '[application] gone: "x" → (absent)',
        '[application] greeting: "hello" → "hi"',
    ]
    assert "watching test-app/default: application" in captured.err


async def test_watch_json_lines(
    server: ApolloTestServer, env: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    watching = asyncio.create_task(run("watch", "--json", "--count", "1", "-n", "application"))
    async with asyncio.timeout(10):
        await server.wait_for_polls(1)
    server.publish(APP, "application", {"greeting": "hello", "timeout": "45"})
    async with asyncio.timeout(10):
        assert await watching == EXIT_OK
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line) == {
        "namespace": "application",
        "key": "timeout",
        "change": "MODIFIED",
        "old": "30",
        "new": "45",
        "release_key": json.loads(line)["release_key"],
    }


# ----------------------------------------------------------------------------- subprocesses


async def spawn(*argv: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {}), "PYTHONIOENCODING": "utf-8"},
    )


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    try:
        async with asyncio.timeout(PROC_TIMEOUT):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, (out or b"").decode(), (err or b"").decode()


async def test_subprocess_get_and_missing_key(env: dict[str, str]) -> None:
    code, out, _ = await finish(await spawn(sys.executable, "-m", "aioapollo", "get", "timeout"))
    assert (code, out) == (EXIT_OK, "30\n")
    code, out, err = await finish(await spawn(sys.executable, "-m", "aioapollo", "get", "nope"))
    assert (code, out) == (EXIT_MISSING, "")
    assert "not found" in err


async def test_console_script_dump(env: dict[str, str]) -> None:
    script = Path(sys.executable).with_name("aioapollo")
    if not script.exists():
        pytest.skip("the aioapollo console script is not installed next to this interpreter")
    code, out, _ = await finish(await spawn(str(script), "dump", "--format", "json"))
    assert code == EXIT_OK
    assert json.loads(out) == {"greeting": "hello", "timeout": "30"}


async def test_subprocess_watch_exits_0_on_sigint(
    server: ApolloTestServer, env: dict[str, str]
) -> None:
    proc = await spawn(sys.executable, "-m", "aioapollo", "watch")
    try:
        assert proc.stderr is not None and proc.stdout is not None
        async with asyncio.timeout(PROC_TIMEOUT):
            banner = await proc.stderr.readline()
        assert banner.startswith(b"watching test-app/default: application")
        server.publish(APP, "application", {"greeting": "hello", "timeout": "60"})
        async with asyncio.timeout(PROC_TIMEOUT):
            line = await proc.stdout.readline()
        assert line.decode() == '[application] timeout: "30" → "60"\n'
        proc.send_signal(signal.SIGINT)
        code, rest, err = await finish(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == EXIT_OK, err
    assert rest == "" and "Traceback" not in err


async def test_subprocess_serve(env: dict[str, str], capsys: pytest.CaptureFixture) -> None:
    proc = await spawn(sys.executable, "-m", "aioapollo", "serve", "--port", "0")
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(PROC_TIMEOUT):
            banner = (await proc.stdout.readline()).decode()
        assert banner.startswith("aioapollo test server on http://127.0.0.1:")
        url = banner.split()[-1]
        async with aiohttp.ClientSession() as http:
            reply = await http.post(
                f"{url}/__aioapollo__/publish",
                json={"appId": "cli-app", "namespace": "application", "items": {"k": "v"}},
            )
            assert reply.status == 200
            reply.release()
        assert await run("get", "k", "--app-id", "cli-app", "--config-server", url) == EXIT_OK
        assert capsys.readouterr().out == "v\n"
        proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == EXIT_OK, err


async def test_subprocess_dump_into_a_closed_pipe_exits_0(env: dict[str, str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written: `| head -0`
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aioapollo",
            "dump",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_end,
            stderr=asyncio.subprocess.PIPE,
        )
    finally:
        os.close(write_end)
    code, _, err = await finish(proc)
    assert code == EXIT_OK, err
    assert "Traceback" not in err

"""The ``aioapollo`` command line: through ``main(argv)`` and as real subprocesses."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from aioapollo._cli.main import EXIT_AUTH, EXIT_MISSING, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, main
from aioapollo.testing import ApolloTestServer

from .._support import free_port
from ..conftest import APP

#: Generous: a subprocess imports aiohttp first, on a machine shared with other test runs.
PROC_TIMEOUT = 30.0


@pytest.fixture
def env(server: ApolloTestServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the CLI at the test server through the environment, as a user would."""
    for name in list(os.environ):
        if name.startswith("APOLLO_") or name in ("APP_ID", "IDC", "AIOAPOLLO_CONTROL_TOKEN"):
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


async def test_get_on_a_file_namespace_points_at_its_text(
    server: ApolloTestServer, env: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    server.publish(APP, "db.json", '{"pool": 5}')
    for argv in (
        ["get", "pool", "-n", "db.json"],
        ["get", "pool", "-n", "db.json", "--default", "1"],
    ):
        assert await run(*argv) == EXIT_USAGE
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "'db.json' is a json file" in captured.err
        assert "aioapollo dump db.json" in captured.err
        assert "not found" not in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["get", "k", "--timeout", "abc"], "--timeout: expected a positive number of seconds"),
        (["get", "k", "--timeout", "-1"], "--timeout: expected a positive number of seconds"),
        (["watch", "--count", "x"], "--count: expected a whole number of at least 1, got 'x'"),
        (["serve", "--port", "http"], "--port: expected a port number (0 to 65535)"),
        (["publish", "--timeout", "soon", "k=v"], "--timeout: expected a positive number"),
        (["publish", "--wait-polls", "0", "k=v"], "--wait-polls: expected a whole number"),
    ],
)
async def test_bad_flag_values_say_what_is_expected(
    argv: list[str], message: str, env: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    assert await run(*argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err
    assert "invalid" not in err and "_positive" not in err


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


async def test_a_boolean_variable_that_is_no_boolean_exits_2_naming_it(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("APOLLO_SHARE_POLL", "enabled")
    assert await run("get", "greeting") == EXIT_USAGE
    err = capsys.readouterr().err
    assert "APOLLO_SHARE_POLL='enabled' is not a boolean" in err and "appId" not in err


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
        assert banner.startswith("aioapollo test server ready on http://127.0.0.1:")
        url = banner.split()[-1]
        assert proc.stderr is not None
        control = None
        async with asyncio.timeout(PROC_TIMEOUT):
            while control is None:  # the log line that names the control API's URL
                logged = (await proc.stderr.readline()).decode()
                assert logged, "serve ended its log without naming the control API"
                control = re.search(r"control API: (\S+)", logged)
        async with aiohttp.ClientSession() as http:
            async with http.get(control[1]) as reply:  # the URL it logs answers
                assert reply.status == 200, control[1]
                assert "POST /__aioapollo__/publish" in (await reply.json())["endpoints"]
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


# ------------------------------------------- publish / delete (test server only)


async def test_publish_and_delete_drive_the_test_server(
    server: ApolloTestServer,
    env: dict[str, str],
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    assert await run("publish", "greeting=hi", "url=jdbc:x?a=b", "empty=") == EXIT_OK
    key = capsys.readouterr().out.strip()
    release = server.store.release(APP, "application")
    assert release is not None and release.key == key
    assert dict(release.configurations) == {"greeting": "hi", "url": "jdbc:x?a=b", "empty": ""}

    yaml_file = tmp_path / "app.yaml"
    yaml_file.write_text("port: 9000\n", encoding="utf-8")
    assert await run("publish", "-n", "app.yaml", "--file", str(yaml_file)) == EXIT_OK
    assert await run("publish", "-n", "db.json", "--content", '{"pool": 5}') == EXIT_OK
    monkeypatch.setattr(sys, "stdin", io.StringIO("<a/>"))
    assert await run("publish", "-n", "x.xml", "--file", "-") == EXIT_OK
    capsys.readouterr()
    assert await run("dump", "app.yaml") == EXIT_OK
    assert await run("dump", "db.json") == EXIT_OK
    assert await run("dump", "x.xml") == EXIT_OK
    assert capsys.readouterr().out == 'port: 9000\n{"pool": 5}\n<a/>\n'

    monkeypatch.setenv("APOLLO_CLUSTER", "east")
    assert await run("publish", "greeting=east") == EXIT_OK
    assert await run("publish", "--cluster", "west", "--public", "-n", "shared", "p=1") == EXIT_OK
    monkeypatch.delenv("APOLLO_CLUSTER")
    east = server.store.release(APP, "application", "east")
    assert east is not None and east.configurations["greeting"] == "east"
    assert server.store.public_owner("shared") == APP

    assert await run("publish", "--gray-ip", "10.0.0.9", "greeting=gray") == EXIT_OK
    assert await run("publish", "-n", "db.json", "--gray-label", "canary", "--content", "{}") == 0
    capsys.readouterr()
    assert await run("get", "greeting", "--ip", "10.0.0.9") == EXIT_OK
    assert await run("get", "greeting", "--ip", "10.0.0.8") == EXIT_OK
    assert await run("dump", "db.json", "--label", "canary") == EXIT_OK
    assert capsys.readouterr().out == "gray\nhi\n{}\n"

    assert await run("delete", "--gray") == EXIT_OK
    assert await run("get", "greeting", "--ip", "10.0.0.9") == EXIT_OK
    assert capsys.readouterr().out == "hi\n"
    assert await run("delete", "-n", "app.yaml") == EXIT_OK
    assert server.store.release(APP, "app.yaml") is None
    assert await run("delete", "-n", "app.yaml") == EXIT_MISSING
    assert await run("delete", "--gray") == EXIT_MISSING
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"aioapollo: error: nothing to delete: no release of {APP}+default+app.yaml",
        f"aioapollo: error: nothing to delete: no gray release of {APP}+default+application",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["publish", "-n", "db.json", "pool=5"], "'db.json' is a json namespace"),
        (["publish", "--content", "secret-canary"], "'application' is a properties namespace"),
        (["publish"], "nothing to publish"),
        (["publish", "-n", "db.json"], "give the text of 'db.json'"),
        (["publish", "k=v", "secret-canary"], "KEY=VALUE argument 2 has no '='"),
        (["publish", "=secret-canary"], "KEY=VALUE argument 1 has an empty key"),
        (["publish", "-n", "a.txt", "--file", "/nonexistent/x"], "cannot read /nonexistent/x"),
        (["publish", "--server", "ftp://h", "k=v"], "--server must be an http:// or https:// URL"),
    ],
)
async def test_publish_usage_errors_exit_2_without_echoing_values(
    argv: list[str], message: str, env: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    assert await run(*argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err
    assert "secret-canary" not in err


async def test_publish_needs_an_app_id(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("APP_ID")
    assert await run("delete") == EXIT_USAGE
    assert capsys.readouterr().err == "aioapollo: error: no appId: set APP_ID or pass --app-id\n"


async def test_publish_refuses_a_server_without_the_control_api(
    env: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    async def not_found(request: web.Request) -> web.Response:  # how Spring answers
        body = {"status": 404, "error": "Not Found", "path": request.path}
        return web.json_response(body, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_found)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        assert await run("publish", "--server", url, "k=v") == EXIT_USAGE
        assert await run("delete", "--server", url) == EXIT_USAGE
    finally:
        await runner.cleanup()
    err = capsys.readouterr().err
    assert err.count("is not an aioapollo test server") == 2
    assert "works only with `aioapollo serve`" in err


async def test_publish_keeps_trying_until_the_server_listens(
    env: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    assert await run("publish", "--server", url, "--timeout", "0.5", "k=v") == EXIT_UNAVAILABLE
    assert time.monotonic() - started >= 0.5  # it retried up to its deadline, not once
    assert "is `aioapollo serve` running there?" in capsys.readouterr().err

    publishing = asyncio.create_task(run("publish", "--server", url, "--app-id", "late", "k=v"))
    async with ApolloTestServer(port=port) as late:
        async with asyncio.timeout(PROC_TIMEOUT):
            assert await publishing == EXIT_OK
        release = late.store.release("late", "application")
        assert release is not None and dict(release.configurations) == {"k": "v"}


async def test_publish_sends_the_control_token(
    env: dict[str, str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ApolloTestServer(host="0.0.0.0") as guarded:
        token = guarded.control_token
        assert token is not None
        argv = ["publish", "--server", guarded.url, "k=v"]
        assert await run(*argv) == EXIT_AUTH
        assert "set AIOAPOLLO_CONTROL_TOKEN" in capsys.readouterr().err
        assert await run(*argv, "--control-token", "wrong") == EXIT_AUTH
        assert "refused" in capsys.readouterr().err
        assert guarded.store.release(APP, "application") is None
        assert await run(*argv, "--control-token", token) == EXIT_OK
        monkeypatch.setenv("AIOAPOLLO_CONTROL_TOKEN", token)
        assert await run("delete", "--server", guarded.url) == EXIT_OK
        assert guarded.store.release(APP, "application") is None
    assert token not in str(capsys.readouterr())


async def test_publish_waits_for_a_watcher(
    server: ApolloTestServer, env: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    server.hold_seconds = 30  # a watcher's poll stays held until the publish
    assert await run("publish", "--wait-polls", "1", "--timeout", "0.3", "k=v") == EXIT_UNAVAILABLE
    assert "0 of 1 clients were long-polling" in capsys.readouterr().err
    watching = asyncio.create_task(run("watch", "--count", "1"))
    assert await run("publish", "--wait-polls", "1", "greeting=bye", "timeout=30") == EXIT_OK
    async with asyncio.timeout(PROC_TIMEOUT):
        assert await watching == EXIT_OK
    assert '[application] greeting: "hello" → "bye"' in capsys.readouterr().out.splitlines()

"""`aioapollo agent --write DIR` and `--exec -- CMD`: config for processes in any language.

Real processes throughout: the agent is `python -m aioapollo agent`, its child a shell script.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from aioapollo import NamespaceSnapshot, Source
from aioapollo._cli.agent import env_name, render
from aioapollo._cli.main import main
from aioapollo.testing import ApolloTestServer

from ..conftest import APP

pytestmark = pytest.mark.timeout(120)


async def start_agent(
    server: ApolloTestServer, tmp_path: Path, *args: str, **env: str
) -> asyncio.subprocess.Process:
    full = {
        **os.environ,
        "APP_ID": APP,
        "APOLLO_CONFIG_SERVICE": server.url,
        "APOLLO_SHARE_DIR": str(tmp_path / "share"),
        "APOLLO_CACHE_DIR": str(tmp_path / "cache"),
        **env,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aioapollo",
        "agent",
        *args,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def read_line(stream: asyncio.StreamReader | None, pattern: str) -> re.Match[str]:
    assert stream is not None
    async with asyncio.timeout(30):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                pytest.fail(f"the stream ended before {pattern!r}")
            if match := re.search(pattern, line):
                return match


async def stopped(proc: asyncio.subprocess.Process) -> int:
    async with asyncio.timeout(30):
        return await proc.wait()


async def test_files_are_replaced_whole_while_100_releases_land(
    server: ApolloTestServer, tmp_path: Path
) -> None:
    out = tmp_path / "conf"
    proc = await start_agent(server, tmp_path, "--write", str(out), "--format", "json")
    target = out / "application.json"
    pad = "x" * 64_000  # a file big enough to be written in several steps

    def release(n: int) -> dict[str, str]:
        return {"n": str(n), "check": str(n), "pad": pad + str(n)}

    server.publish(APP, "application", release(0))
    seen = {"reads": 0, "newest": -1, "torn": 0, "versions": 0}
    reached = [threading.Event() for _ in range(100)]
    done = threading.Event()

    def reader() -> None:  # a reader in another thread, as fast as it can
        while not done.is_set():
            try:
                text = target.read_text()
            except FileNotFoundError:
                continue
            try:
                data = json.loads(text)
                assert data["n"] == data["check"] and data["pad"] == pad + data["n"]
            except (ValueError, KeyError, AssertionError):
                seen["torn"] += 1
                continue
            seen["reads"] += 1
            n = int(data["n"])
            if n > seen["newest"]:
                seen["newest"] = n
                seen["versions"] += 1
                for event in reached[: n + 1]:
                    event.set()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        await read_line(proc.stdout, r"leading \(pid \d+\)")
        assert await asyncio.to_thread(reached[0].wait, 30)
        # 100 releases in bursts of 10: the agent polls at most every poll_min_interval
        # (0.5 s), so it writes the newest of each burst at least, 100 files at most.
        for n in range(1, 100):
            server.publish(APP, "application", release(n))
            if n % 10 == 9:
                assert await asyncio.to_thread(reached[n].wait, 30), f"{n} never arrived"
    finally:
        done.set()
        await asyncio.to_thread(thread.join)
        proc.send_signal(signal.SIGTERM)
        assert await stopped(proc) == 0
    assert seen["torn"] == 0 and seen["newest"] == 99 and seen["reads"] >= 100
    assert seen["versions"] >= 10
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert sorted(p.name for p in out.iterdir()) == ["application.json"]  # no temp file left


#: The traps come first: "start" tells the test the child is ready for its signals.
CHILD = r"""#!/bin/sh
trap 'echo "term $$"; exit 7' TERM
trap 'echo "hup $$ $(grep GREETING "$CONF/application.env")"' HUP
trap 'echo "usr1 $$"; exit 3' USR1
echo "start $$ greeting=$GREETING db=$DB_URL secret=${APOLLO_ACCESS_KEY_SECRET:-none}"
while :; do sleep 1 & wait $!; done
"""


def child_script(tmp_path: Path) -> Path:
    script = tmp_path / "child.sh"
    script.write_text(CHILD)
    script.chmod(0o700)
    return script


async def test_exec_restarts_the_child_with_new_variables_and_passes_on_its_exit_code(
    server: ApolloTestServer, tmp_path: Path
) -> None:
    server.publish(APP, "application", {"greeting": "hello", "db.url": "pg://one"})
    proc = await start_agent(
        server,
        tmp_path,
        "--exec",
        "--",
        "sh",
        str(child_script(tmp_path)),
        APOLLO_ACCESS_KEY_SECRET="agent-only",
    )
    try:
        first = await read_line(proc.stdout, r"start (\d+) greeting=(\S+) db=(\S+) secret=(\S+)")
        assert first.groups()[1:] == ("hello", "pg://one", "none")  # the secret stays private
        server.publish(APP, "application", {"greeting": "bye", "db.url": "pg://one"})
        assert (await read_line(proc.stdout, r"term (\d+)"))[1] == first[1]
        second = await read_line(proc.stdout, r"start (\d+) greeting=(\S+)")
        assert second[2] == "bye" and second[1] != first[1]
        await read_line(proc.stderr, r"restarting sh")
    finally:
        proc.send_signal(signal.SIGTERM)  # passed on; the child's `exit 7` is the agent's
        code = await stopped(proc)
    assert (await read_line(proc.stdout, r"term (\d+)"))[1] == second[1]
    assert code == 7


async def test_exec_with_signal_reloads_in_place_and_exits_when_the_child_does(
    server: ApolloTestServer, tmp_path: Path
) -> None:
    server.publish(APP, "application", {"greeting": "hello"})
    conf = tmp_path / "conf"
    proc = await start_agent(
        server,
        tmp_path,
        "--write",
        str(conf),
        "--format",
        "env",
        "--exec",
        "--signal",
        "HUP",
        "--",
        "sh",
        str(child_script(tmp_path)),
        CONF=str(conf),
    )
    try:
        first = await read_line(proc.stdout, r"start (\d+) greeting=hello")
        assert (conf / "application.env").read_text() == "GREETING=hello\n"
        server.publish(APP, "application", {"greeting": "it's me"})
        hup = await read_line(proc.stdout, r"hup (\d+) (.*)")
        assert hup[1] == first[1] and hup[2] == "GREETING='it'\"'\"'s me'"  # sh-quoted
        proc.send_signal(signal.SIGUSR1)  # forwarded: the child exits 3 on its own
        assert (await read_line(proc.stdout, r"usr1 (\d+)"))[1] == first[1]
        assert await stopped(proc) == 3
        await read_line(proc.stderr, r"exited with 3; stopping")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_flags_that_do_not_go_together_are_usage_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APP_ID", APP)
    monkeypatch.setenv("APOLLO_CONFIG_SERVICE", "http://127.0.0.1:9")
    for argv, message in [
        (["agent", "--exec"], "--exec needs a command"),
        (["agent", "--", "sh"], "needs --exec"),
        (["agent", "--signal", "HUP"], "--signal goes with --exec"),
        (["agent", "--exec", "--signal", "NOPE", "--", "sh"], "not a signal"),
    ]:
        assert main(argv) == 2
        assert message in capsys.readouterr().err


def test_render_formats_and_variable_names() -> None:
    snap = NamespaceSnapshot(
        "application",
        "properties",
        {"db.url": "pg://x", "a b": "=1\n"},
        release_key="r",
        source=Source.REMOTE,
        fetched_at=0.0,
    )
    assert render(snap, "json") == (
        "application.json",
        '{\n  "a b": "=1\\n",\n  "db.url": "pg://x"\n}\n',
    )
    assert render(snap, "properties") == (
        "application.properties",
        "a\\ b=\\=1\\n\ndb.url=pg://x\n",
    )
    assert render(snap, "env") == ("application.env", "A_B='=1\n'\nDB_URL=pg://x\n")
    assert render(snap, "export")[0] == "application"
    text = NamespaceSnapshot(
        "db.json", "json", {"content": "{}"}, release_key="r", source=Source.REMOTE, fetched_at=0
    )
    assert render(text, "export") == ("db.json", "{}\n")
    assert render(text, "env") == ("db.json", "{}")
    assert env_name("9lives.x-y", "APP_") == "APP_9LIVES_X_Y"
    assert env_name("9lives") == "_9LIVES"

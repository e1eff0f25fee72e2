"""How each kind of marked block is exercised (see ``_blocks.KINDS``).

Programs, apps and shell blocks run in fresh processes, in an empty temporary directory, with
a clean environment (no ``APOLLO_*`` or ``APP_ID`` of the caller) and ``HOME`` and the cache
pointed into that directory. Python runs with ``-X dev``: asyncio debug mode, where touching
an event loop from another thread raises instead of corrupting it, and warnings shown.

The test server behind ``program`` and ``app`` blocks (and ``shell`` blocks marked
``with: test server``) holds long polls 0.5 s and serves :data:`RELEASES` to each app id of
:data:`APP_IDS`. A block that names ``http://127.0.0.1:8080`` or ``http://apollo-config:8080``
is pointed at it; the environment carries ``APP_ID=my-app`` and ``APOLLO_CONFIG_SERVICE``.
"""

from __future__ import annotations

import ast
import asyncio
import configparser
import contextlib
import importlib
import importlib.metadata
import inspect
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from aioapollo.testing import ApolloTestServer

from .._procs import BAD_LOG_LINES
from .._support import free_port
from ._blocks import ROOT, Block, parse

#: Seconds any one process may take (a fresh interpreter imports aiohttp on a busy machine).
PROC_TIMEOUT = 60.0
#: The distribution name on PyPI (the import name is ``aioapollo``).
DISTRIBUTION = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["name"]

APP_IDS = ("my-app", "demo-app")
RELEASES: dict[str, dict[str, str] | str] = {
    "application": {
        "greeting": "hello from Apollo",
        "timeout": "30",
        "DB_URL": "postgres://db/app",
        "PORT": "8000",
    },
    "db.json": '{"pool_size": 5}',
}
#: Addresses the docs give Apollo; a block run by the suite is pointed at the test server.
DOC_SERVER_URLS = ("http://127.0.0.1:8080", "http://apollo-config:8080")

#: Stops a shell block at the first failing command, names it, and never leaves a job behind.
SHELL_PRELUDE = """set -euo pipefail
trap 'echo "FAILED (exit $?): $BASH_COMMAND" >&2' ERR
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
"""

#: Serves one GET to the ``app`` of ``app.py`` the way a server would: lifespan first.
APP_DRIVER = """
import sys

from app import app

path = sys.argv[1]
if hasattr(app, "test_client"):  # Flask: WSGI, no lifespan
    response = app.test_client().get(path)
    status, body = response.status_code, response.get_data(as_text=True)
elif callable(app):  # ASGI: TestClient runs the lifespan as a server does
    from starlette.testclient import TestClient

    with TestClient(app) as client:
        response = client.get(path)
    status, body = response.status_code, response.text
else:
    sys.exit(f"app is a {type(app).__name__}, neither a Flask nor an ASGI app")
print(status, body)
sys.exit(0 if status == 200 else f"GET {path} answered {status}")
"""


@dataclass(frozen=True)
class Done:
    """A finished process: exit code (None: killed at the timeout) and its output."""

    returncode: int | None
    out: str
    err: str

    def report(self, block: Block) -> str:
        status = "timed out" if self.returncode is None else f"exit {self.returncode}"
        head = f"{block.where} ({block.kind}): {status}"
        return f"{head}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


async def run_process(argv: list[str], cwd: Path, env: dict[str, str]) -> Done:
    """Run ``argv`` in its own session; on timeout kill the whole group, keeping the output."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    chunks: dict[str, bytearray] = {"out": bytearray(), "err": bytearray()}

    async def drain(stream: asyncio.StreamReader, into: bytearray) -> None:
        while chunk := await stream.read(65536):
            into.extend(chunk)

    readers = asyncio.gather(drain(proc.stdout, chunks["out"]), drain(proc.stderr, chunks["err"]))
    returncode: int | None = None
    try:
        async with asyncio.timeout(PROC_TIMEOUT):
            returncode = await proc.wait()
    except TimeoutError:
        pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the block left running
        await proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(readers, 5)
    out, err = (chunks[name].decode(errors="replace") for name in ("out", "err"))
    return Done(returncode, out, err)


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without Apollo settings, with a private home and cache."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("APOLLO_", "PYTEST_", "PYTHONASYNCIO"))
        and k not in ("APP_ID", "IDC", "AIOAPOLLO_CONTROL_TOKEN")
    }
    venv_bin = str(Path(sys.executable).parent)  # the aioapollo script, pytest, uvicorn ...
    env.update(
        PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(tmp_path),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        PYTHONIOENCODING="utf-8",
    )
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def fixture_server() -> AsyncIterator[ApolloTestServer]:
    async with ApolloTestServer(hold_seconds=0.5) as server:
        for app_id in APP_IDS:
            for namespace, data in RELEASES.items():
                server.publish(app_id, namespace, data)
        yield server


def server_env(tmp_path: Path, server: ApolloTestServer) -> dict[str, str]:
    return clean_env(tmp_path, APP_ID=APP_IDS[0], APOLLO_CONFIG_SERVICE=server.url)


def pointed_at(code: str, server: ApolloTestServer) -> str:
    for url in DOC_SERVER_URLS:
        code = code.replace(url, server.url)
    return code


def check_output(block: Block, done: Done, expected: list[str]) -> None:
    assert done.returncode == 0, done.report(block)
    bad = BAD_LOG_LINES.search(done.err) or re.search(r"^FAILED \(exit", done.err, re.M)
    assert bad is None, f"{bad.group()!r} on stderr of " + done.report(block)
    lines = done.out.splitlines()
    for text in expected:
        assert any(text in line for line in lines), f"no {text!r} in " + done.report(block)


def python(*args: str) -> list[str]:
    return [sys.executable, "-X", "dev", *args]


# ------------------------------------------------------------------------------ the kinds


async def run_program(block: Block, tmp_path: Path) -> None:
    async with fixture_server() as server:
        (tmp_path / "program.py").write_text(pointed_at(block.code, server), "utf-8")
        done = await run_process(python("program.py"), tmp_path, server_env(tmp_path, server))
    check_output(block, done, block.option("expect"))


async def run_app(block: Block, tmp_path: Path) -> None:
    async with fixture_server() as server:
        (tmp_path / "app.py").write_text(pointed_at(block.code, server), "utf-8")
        argv = python("-c", APP_DRIVER, block.detail)
        done = await run_process(argv, tmp_path, server_env(tmp_path, server))
    check_output(block, done, block.option("expect"))


async def check_file(block: Block, tmp_path: Path) -> None:
    if block.lang == "python":
        compile(block.code, block.where, "exec")
    else:
        parse_data(block)


async def run_pytest(block: Block, tmp_path: Path) -> None:
    """Save the page's ``file`` blocks above this one and this one; pytest must pass it."""
    for earlier in parse(block.page):
        if earlier.line >= block.line:
            break
        if earlier.kind == "file":
            (tmp_path / earlier.detail).write_text(earlier.code, "utf-8")
    (tmp_path / block.detail).write_text(block.code, "utf-8")
    # pytest-asyncio sets its loops' debug mode itself: -X dev alone leaves them off.
    argv = python("-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", "--asyncio-debug")
    argv.append(block.detail)
    done = await run_process(argv, tmp_path, clean_env(tmp_path))
    check_output(block, done, [" passed"])


async def run_shell(block: Block, tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if block.option("with"):
            server = await stack.enter_async_context(fixture_server())
            env, port = server_env(tmp_path, server), str(server.port)
        else:
            env, port = clean_env(tmp_path), str(free_port())  # 8080 may be taken here
        script = SHELL_PRELUDE + block.code.replace("8080", port)
        done = await run_process(["bash", "-c", script], tmp_path, env)
    check_output(block, done, [text.replace("8080", port) for text in block.option("expect")])


async def check_parse(block: Block, tmp_path: Path) -> None:
    parse_data(block)


def parse_data(block: Block) -> object:
    if block.lang == "json":
        return json.loads(block.code)
    if block.lang == "yaml":
        return yaml.safe_load(block.code)
    if block.lang == "toml":
        return tomllib.loads(block.code)
    if block.lang == "ini":  # a systemd unit has % specifiers: no interpolation
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(block.code, source=block.where)
        return parser
    raise AssertionError(f"{block.where}: no parser for {block.lang!r}")


async def check_pip(block: Block, tmp_path: Path) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"][
        "optional-dependencies"
    ]
    commands = [line for line in _commands(block) if line.strip()]
    assert commands, f"{block.where}: no command"
    for command in commands:
        words = shlex.split(command, comments=True)
        assert words[:2] == ["pip", "install"], f"{block.where}: not a pip install: {command!r}"
        wanted: list[str] = []
        for word in (w for w in words[2:] if not w.startswith("-")):
            name = "." if word.startswith(".") else Requirement(word).name
            assert canonicalize_name(name) != "aioapollo", (
                f"{block.where}: 'aioapollo' on PyPI is another project; "
                f"this one is {DISTRIBUTION!r}: {command!r}"
            )
            if name in (".", DISTRIBUTION):  # this project, from a checkout or by its name
                wanted.append(DISTRIBUTION)
                if "[" in word:
                    for extra in word[word.index("[") + 1 : -1].split(","):
                        assert extra in extras, (
                            f"{block.where}: no extra {extra!r} in pyproject.toml"
                        )
                        wanted += extras[extra]
            else:
                wanted.append(word)
        for requirement in wanted:
            name = Requirement(requirement).name
            try:
                importlib.metadata.distribution(name)
            except importlib.metadata.PackageNotFoundError:
                raise AssertionError(f"{block.where}: {name} is not installed here") from None


async def check_signature(block: Block, tmp_path: Path) -> None:
    module_name, _, name = block.detail.rpartition(".")
    target = getattr(importlib.import_module(module_name), name)
    documented = ast.parse(f"def {block.code.strip()}: pass").body[0]
    assert isinstance(documented, ast.FunctionDef)
    assert documented.name == name, f"{block.where}: documents {documented.name}, not {name}"
    shown = _ast_params(documented.args)
    real = [
        (p.name, p.kind.name, "none" if p.default is p.empty else repr(p.default))
        for p in inspect.signature(target).parameters.values()
    ]
    assert shown == real, f"{block.where}: the signature shown differs from the real one"


def _ast_params(args: ast.arguments) -> list[tuple[str, str, str]]:
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += args.defaults
    params = [
        (a.arg, "POSITIONAL_ONLY" if a in args.posonlyargs else "POSITIONAL_OR_KEYWORD", d)
        for a, d in zip(positional, defaults, strict=True)
    ]
    if args.vararg:
        params.append((args.vararg.arg, "VAR_POSITIONAL", None))
    params += [
        (a.arg, "KEYWORD_ONLY", d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    if args.kwarg:
        params.append((args.kwarg.arg, "VAR_KEYWORD", None))
    return [
        (name, kind, "none" if d is None else repr(ast.literal_eval(d))) for name, kind, d in params
    ]


async def check_fragment(block: Block, tmp_path: Path) -> None:
    if block.lang == "python":
        tree = ast.parse(block.code, block.where)
        compile(tree, block.where, "exec")  # what parsing alone lets through: await outside async
        imports: list[ast.stmt] = [
            node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)
        ]
        namespace: dict[str, Any] = {}
        exec(compile(ast.Module(imports, type_ignores=[]), block.where, "exec"), namespace)
    else:
        script = "\n".join(_commands(block)) + "\n"
        done = await asyncio.to_thread(
            subprocess.run, ["bash", "-n"], input=script, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{block.where}: bash -n:\n{done.stderr}"


async def nothing_to_run(block: Block, tmp_path: Path) -> None:
    assert block.detail  # the reason, required by the parser


def _commands(block: Block) -> list[str]:
    """A shell block's lines; for a console block, the commands after ``$`` prompts."""
    if block.lang != "console":
        return block.code.splitlines()
    commands: list[str] = []
    continued = False
    for line in block.code.splitlines():
        if line.startswith("$ ") or continued:
            commands.append(line[2:] if line.startswith("$ ") and not continued else line)
            continued = line.rstrip().endswith("\\")
    return commands


RUNNERS: dict[str, Callable[[Block, Path], Awaitable[None]]] = {
    "program": run_program,
    "app": run_app,
    "file": check_file,
    "pytest": run_pytest,
    "shell": run_shell,
    "parse": check_parse,
    "pip": check_pip,
    "signature": check_signature,
    "fragment": check_fragment,
    "text": nothing_to_run,
}

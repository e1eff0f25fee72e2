"""`aioapollo serve` serves the portal OpenAPI; the openapi package stays independent."""

from __future__ import annotations

import ast
import asyncio
import os
import signal
import sys
from pathlib import Path

import aioapollo.openapi
from aioapollo.openapi import ApolloOpenApiClient, App

PACKAGE = Path(aioapollo.openapi.__file__).parent


async def test_serve_answers_the_openapi_with_the_env_token(tmp_path: Path) -> None:
    env = {**os.environ, "APOLLO_OPENAPI_TOKEN": "serve-token-123", "PYTHONIOENCODING": "utf-8"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aioapollo", "serve", "--port", "0",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            banner = (await proc.stdout.readline()).decode()
        url = banner.split()[-1]
        async with ApolloOpenApiClient(url, token="serve-token-123", operator="dev") as api:
            await api.create_app(App("cli-app", "CLI app", org_id="dev", owner_name="dev"))
            await api.update_item(env="DEV", app_id="cli-app", namespace="application",
                                  key="k", value="v", create=True)  # fmt: skip
            release = await api.publish(env="DEV", app_id="cli-app", namespace="application",
                                        title="first")  # fmt: skip
            assert dict(release.configurations) == {"k": "v"}
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"serve-token-123" not in err


def test_the_openapi_package_imports_only_the_exception_tree() -> None:
    """The management plane shares nothing with the config client but ``_exceptions``."""
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                assert node.module == "_exceptions", f"{path.name} imports ..{node.module}"
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert not node.module.startswith("aioapollo"), f"{path.name}: {node.module}"


def test_openapi_all_is_sorted_and_complete() -> None:
    public = {name for name in dir(aioapollo.openapi) if not name.startswith(("_", "@"))}
    assert public == set(aioapollo.openapi.__all__)
    assert list(aioapollo.openapi.__all__) == sorted(aioapollo.openapi.__all__)

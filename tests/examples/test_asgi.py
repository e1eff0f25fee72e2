"""The ASGI examples run as documented: the FastAPI and Starlette apps, and the gunicorn demo."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from starlette.testclient import TestClient

from aioapollo import ClientState
from aioapollo.testing import ApolloTestServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str, monkeypatch: pytest.MonkeyPatch, server: ApolloTestServer) -> Any:
    """Import ``examples/<name>.py`` afresh, configured for ``server`` through the environment."""
    monkeypatch.setenv("APP_ID", "example-app")
    monkeypatch.setenv("APOLLO_CONFIG_SERVICE", server.url)
    monkeypatch.setenv("APOLLO_CACHE_FILE_ENABLE", "false")
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["fastapi_app", "starlette_app", "asgi_workers_app"])
async def test_example_app_serves_and_follows_a_publish(
    name: str, server: ApolloTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.publish("example-app", "application", {"greeting": "hi", "rate_limit": "7"})
    module = load_example(name, monkeypatch, server)
    client = module.apollo
    assert client.state is ClientState.CREATED  # inert at import
    # Listeners run once the new snapshot is in place: after this, a request sees the publish.
    changed = threading.Event()
    client.on_change(lambda _event: changed.set())

    def serve() -> list[Any]:
        with TestClient(module.app) as http:
            before = http.get("/greeting").json()
            server.publish("example-app", "application", {"greeting": "hey", "rate_limit": "7"})
            assert changed.wait(10), "the publish was not heard"
            after = http.get("/greeting").json()
        return [before, after]

    before, after = await asyncio.to_thread(serve)
    assert before["greeting"] == "hi" and after["greeting"] == "hey"
    if name == "starlette_app":
        assert before["rate_limit_at_startup"] == 7
    assert client.state is ClientState.CLOSED


@pytest.mark.servers
@pytest.mark.timeout(150)
def test_demo_asgi_every_worker_updates(capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import demo_asgi
    finally:
        sys.path.remove(str(EXAMPLES))
    assert demo_asgi.run() is True
    out = capsys.readouterr().out
    seen = re.findall(r"worker (\d+): saw greeting='hot reloaded!' (\d+) ms after publish", out)
    assert len({pid for pid, _ in seen}) == demo_asgi.WORKERS, out
    assert "Apollo holds 4 long polls: one per worker, none in the arbiter" in out
    assert out.rstrip().endswith("OK: every worker updated")

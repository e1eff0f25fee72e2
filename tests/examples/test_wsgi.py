"""The WSGI examples run: the pool rebuilt in place, Django settings, the uWSGI demo."""

from __future__ import annotations

import asyncio
import runpy
import sys
from pathlib import Path

import pytest

from aioapollo import SyncApolloClient
from aioapollo.testing import ApolloTestServer

from .._procs import EXAMPLES, UWSGI_HINT, tool


def test_rebuild_pool_example_swaps_the_pool(capsys: pytest.CaptureFixture[str]) -> None:
    namespace = runpy.run_path(str(EXAMPLES / "rebuild_pool.py"))
    asyncio.run(namespace["main"]())
    out = capsys.readouterr().out
    assert "before: 200 limit 4" in out
    assert "pool rebuilt: generation 2" in out
    assert "after:  200 limit 16" in out


async def test_django_settings_example_reads_apollo(
    server: ApolloTestServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.publish(
        "django-app",
        "application",
        {"django.secret_key": "s3cret", "django.allowed_hosts": "a.example,b.example"}
        | {"db.host": "db.internal", "db.port": "6432"},
    )
    server.publish("django-app", "django.json", '{"cache": "redis"}')
    monkeypatch.setenv("APP_ID", "django-app")
    monkeypatch.setenv("APOLLO_CONFIG_SERVICE", server.url)
    monkeypatch.setenv("APOLLO_CACHE_DIR", str(tmp_path))
    settings = await asyncio.to_thread(runpy.run_path, str(EXAMPLES / "django_settings.py"))
    apollo: SyncApolloClient = settings["APOLLO"]
    try:
        assert apollo.polling  # a plain process: its poller thread runs
        assert settings["SECRET_KEY"] == "s3cret" and settings["DEBUG"] is False
        assert settings["ALLOWED_HOSTS"] == ["a.example", "b.example"]
        db = settings["DATABASES"]["default"]
        assert (db["HOST"], db["PORT"], db["NAME"]) == ("db.internal", 6432, "app")
        assert settings["CACHES_CONFIG"] == {"cache": "redis"}
    finally:
        await asyncio.to_thread(apollo.close)


@pytest.mark.servers
@pytest.mark.timeout(120)
async def test_wsgi_demo_every_worker_updates(capsys: pytest.CaptureFixture[str]) -> None:
    tool("uwsgi", UWSGI_HINT)
    sys.path.insert(0, str(EXAMPLES))
    try:
        import demo_wsgi
    finally:
        sys.path.remove(str(EXAMPLES))
    assert await asyncio.to_thread(demo_wsgi.run)
    out = capsys.readouterr().out
    assert out.count("saw it after") == demo_wsgi.WORKERS
    assert "OK: every uWSGI worker updated" in out

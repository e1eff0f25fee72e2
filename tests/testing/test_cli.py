"""``python -m aioapollo serve``: a real subprocess, seeded from YAML, driven over HTTP."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from aioapollo._cli import build_parser, main

from .._support import free_port

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
    assert f"aioapollo test server on {url}" in stdout
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

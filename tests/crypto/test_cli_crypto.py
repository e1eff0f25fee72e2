"""``aioapollo encrypt|decrypt``: the password from the environment or a prompt, never a flag."""

from __future__ import annotations

import io
from typing import Any

import pytest

from aioapollo._cli.main import main
from aioapollo.crypto import Fernet, Jasypt

PASSWORD = "cli test password"


def run(monkeypatch: pytest.MonkeyPatch, stdin: str, *argv: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(list(argv))


def test_encrypt_then_decrypt_with_the_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("APOLLO_JASYPT_PASSWORD", PASSWORD)
    assert run(monkeypatch, "s3cr3t\n", "encrypt") == 0
    value = capsys.readouterr().out.strip()
    assert value.startswith("ENC(") and Jasypt(PASSWORD).decrypt(value) == "s3cr3t"
    assert run(monkeypatch, value + "\n", "decrypt") == 0
    assert capsys.readouterr().out == "s3cr3t\n"
    assert run(monkeypatch, "old\n", "encrypt", "--algorithm", "PBEWithMD5AndDES") == 0
    old = capsys.readouterr().out.strip()
    assert Jasypt(PASSWORD, "PBEWithMD5AndDES").decrypt(old) == "old"


def test_a_wrong_password_or_no_password_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    value = f"ENC({Jasypt(PASSWORD).encrypt('s3cr3t')})"
    monkeypatch.setenv("APOLLO_JASYPT_PASSWORD", "wrong")
    assert run(monkeypatch, value, "decrypt") == 2
    captured = capsys.readouterr()
    assert "does not decrypt" in captured.err and "s3cr3t" not in captured.err + captured.out
    monkeypatch.delenv("APOLLO_JASYPT_PASSWORD")
    monkeypatch.setattr("getpass.getpass", _no_terminal)
    assert run(monkeypatch, "x", "encrypt") == 2
    assert "set APOLLO_JASYPT_PASSWORD" in capsys.readouterr().err


def _no_terminal(prompt: str = "") -> str:
    raise EOFError


def test_a_prompted_password_is_asked_twice_to_encrypt(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.delenv("APOLLO_JASYPT_PASSWORD", raising=False)
    answers = iter([PASSWORD, PASSWORD])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert run(monkeypatch, "s3cr3t", "encrypt") == 0
    assert Jasypt(PASSWORD).decrypt(capsys.readouterr().out) == "s3cr3t"


def test_fernet_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    key = Fernet.generate_key()
    monkeypatch.setenv("APOLLO_FERNET_KEYS", key)
    assert run(monkeypatch, "s3cr3t", "encrypt") == 0
    assert Fernet(key).decrypt(capsys.readouterr().out) == "s3cr3t"
    assert run(monkeypatch, "x", "encrypt", "--iterations", "5") == 2
    assert "are for jasypt" in capsys.readouterr().err

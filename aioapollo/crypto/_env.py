"""A decryptor from the environment: passwords and keys never come from a command line."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ._fernet import Fernet
from ._jasypt import Jasypt

__all__ = ["CRYPTO_ENV", "decryptor_from_env", "read_secret"]

#: Every environment variable :func:`decryptor_from_env` reads.
CRYPTO_ENV = frozenset(
    {
        "APOLLO_JASYPT_PASSWORD",
        "APOLLO_JASYPT_PASSWORD_FILE",
        "APOLLO_JASYPT_ALGORITHM",
        "APOLLO_JASYPT_ITERATIONS",
        "APOLLO_JASYPT_RANDOM_IV",
        "APOLLO_FERNET_KEYS",
        "APOLLO_FERNET_KEYS_FILE",
    }
)


def _read_secret_file(variable: str, path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{variable}: cannot read {path!r} ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{variable}: {path!r} is not UTF-8 text") from None
    return text.rstrip("\r\n")  # the newline an editor or `echo` adds is not the secret's


def read_secret(env: Mapping[str, str], variable: str) -> str | None:
    """``variable``'s value, or the text of the file ``<variable>_FILE`` names (not both)."""
    return _secret(env, variable)


def _secret(env: Mapping[str, str], variable: str) -> str | None:
    direct = env.get(variable, "")
    file = env.get(f"{variable}_FILE", "").strip()
    if direct and file:
        raise ValueError(f"set {variable} or {variable}_FILE, not both")
    if file:
        value = _read_secret_file(f"{variable}_FILE", file)
        if not value:
            raise ValueError(f"{variable}_FILE: {file!r} is empty")
        return value
    return direct or None


def decryptor_from_env(environ: Mapping[str, str] | None = None) -> Jasypt | Fernet | None:
    """The decryptor the environment configures, or None.

    * ``APOLLO_JASYPT_PASSWORD`` (or ``APOLLO_JASYPT_PASSWORD_FILE``, a file holding it, e.g.
      a mounted Kubernetes Secret): a :class:`Jasypt`, with ``APOLLO_JASYPT_ALGORITHM``
      (default ``PBEWITHHMACSHA512ANDAES_256``), ``APOLLO_JASYPT_ITERATIONS`` (default 1000)
      and ``APOLLO_JASYPT_RANDOM_IV`` (default true; false for jasypt-spring-boot 2.x's
      ``PBEWithMD5AndDES`` values).
    * ``APOLLO_FERNET_KEYS`` (comma separated, the encrypting key first) or
      ``APOLLO_FERNET_KEYS_FILE`` (one key per line): a :class:`Fernet`.

    Setting both kinds is a ValueError, as is a malformed setting; messages name the
    variable, never its value.
    """
    env = os.environ if environ is None else environ
    password = _secret(env, "APOLLO_JASYPT_PASSWORD")
    keys = _secret(env, "APOLLO_FERNET_KEYS")
    if password is not None and keys is not None:
        raise ValueError(
            "set APOLLO_JASYPT_PASSWORD(_FILE) or APOLLO_FERNET_KEYS(_FILE), not both: a "
            "client has one decryptor"
        )
    if keys is not None:
        return Fernet(k for k in keys.replace("\n", ",").split(",") if k.strip())
    if password is None:
        return None
    algorithm = env.get("APOLLO_JASYPT_ALGORITHM", "").strip() or "PBEWITHHMACSHA512ANDAES_256"
    iterations_text = env.get("APOLLO_JASYPT_ITERATIONS", "").strip() or "1000"
    try:
        iterations = int(iterations_text)
    except ValueError:
        raise ValueError(
            f"APOLLO_JASYPT_ITERATIONS must be a whole number, not {iterations_text!r}"
        ) from None
    random_iv = True
    iv_text = env.get("APOLLO_JASYPT_RANDOM_IV", "").strip().lower()
    if iv_text:
        if iv_text not in _BOOLEAN:
            raise ValueError(
                f"APOLLO_JASYPT_RANDOM_IV must be true or false (or 1/0, yes/no, on/off), "
                f"not {iv_text!r}"
            )
        random_iv = _BOOLEAN[iv_text]
    return Jasypt(password, algorithm, iterations, random_iv=random_iv)


_BOOLEAN = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}

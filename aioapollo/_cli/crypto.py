"""``aioapollo encrypt`` / ``aioapollo decrypt``: make ``ENC(...)`` values for the portal.

The text comes from stdin; the password or keys from the environment
(``APOLLO_JASYPT_PASSWORD(_FILE)``, ``APOLLO_FERNET_KEYS(_FILE)``) or, for jasypt, a prompt
on the terminal: never from a flag, which ``ps`` and shell histories show.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from ..crypto import Fernet, Jasypt, decryptor_from_env
from ..crypto._env import read_secret
from .common import EXIT_OK, EXIT_USAGE, PROG, CommandFailed

__all__ = ["CRYPTO_COMMANDS", "add_commands", "run"]

CRYPTO_COMMANDS = frozenset({"encrypt", "decrypt"})


def add_commands(sub: Any) -> None:
    for name, what in (
        ("encrypt", "encrypt stdin into an ENC(...) value to paste into the portal"),
        ("decrypt", "decrypt an ENC(...) value read from stdin (prints the plain text)"),
    ):
        command = sub.add_parser(
            name,
            help=what,
            description=f"{what[0].upper()}{what[1:]}. The password comes from "
            "APOLLO_JASYPT_PASSWORD (or APOLLO_JASYPT_PASSWORD_FILE), else a prompt; Fernet "
            "keys from APOLLO_FERNET_KEYS (or APOLLO_FERNET_KEYS_FILE). Never from a flag.",
        )
        command.add_argument(
            "--algorithm",
            help="jasypt algorithm (APOLLO_JASYPT_ALGORITHM, else PBEWITHHMACSHA512ANDAES_256)",
        )
        command.add_argument(
            "--iterations", type=int, help="jasypt iterations (APOLLO_JASYPT_ITERATIONS, 1000)"
        )
        command.add_argument(
            "--no-random-iv",
            action="store_true",
            help="jasypt values without an IV (jasypt-spring-boot 2.x's PBEWithMD5AndDES)",
        )


def run(args: argparse.Namespace) -> int:
    text = sys.stdin.read()
    text = text[:-1] if text.endswith("\n") else text
    text = text[:-1] if text.endswith("\r") else text
    if not text:
        raise CommandFailed(EXIT_USAGE, f"nothing to {args.command}: write the text to stdin")
    tool = _tool(args)
    if args.command == "encrypt":
        sys.stdout.write(f"ENC({tool.encrypt(text)})\n")
        return EXIT_OK
    try:
        plain = tool.decrypt(text)
    except ValueError as exc:
        raise CommandFailed(EXIT_USAGE, str(exc)) from None
    sys.stdout.write(plain + "\n")
    return EXIT_OK


def _tool(args: argparse.Namespace) -> Jasypt | Fernet:
    jasypt_flags = args.algorithm is not None or args.iterations is not None or args.no_random_iv
    try:
        found = decryptor_from_env()
        if isinstance(found, Fernet):
            if jasypt_flags:
                raise ValueError("--algorithm, --iterations and --no-random-iv are for jasypt")
            return found
        if found is not None and not jasypt_flags:
            return found
        if found is None:
            password = _prompt(args.command)
        else:
            password = read_secret(os.environ, "APOLLO_JASYPT_PASSWORD") or ""
        return Jasypt(
            password,
            args.algorithm or (found.algorithm if found else "PBEWITHHMACSHA512ANDAES_256"),
            args.iterations or (found.iterations if found else 1000),
            random_iv=not args.no_random_iv,
        )
    except (ValueError, ImportError) as exc:
        raise CommandFailed(EXIT_USAGE, str(exc)) from None


def _prompt(command: str) -> str:
    try:
        password = getpass.getpass(f"{PROG} {command}: jasypt password: ")
        if command == "encrypt" and getpass.getpass("again: ") != password:
            raise ValueError("the passwords differ")
    except (EOFError, OSError):
        raise ValueError(
            "no password: set APOLLO_JASYPT_PASSWORD or APOLLO_JASYPT_PASSWORD_FILE (or run "
            "this on a terminal to be asked)"
        ) from None
    if not password:
        raise ValueError("no password given")
    return password

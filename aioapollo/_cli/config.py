"""``aioapollo config export|diff|apply DIR``: Apollo configuration as files, through the portal.

The desired state is ``DIR/<env>/<cluster>/<namespace>``: a properties namespace (a name
without a ``.json``/``.yaml``/``.yml``/``.xml``/``.txt`` suffix) is a YAML or JSON mapping of
key to string; any other namespace is its raw text. Only the namespaces that have a file are
looked at; in each, a key without a line in the file is deleted.

``diff`` prints what ``apply`` would change; ``apply`` changes exactly those items and, with
``--publish``, releases each namespace whose release differs from the files. Apollo releases a
namespace's whole working set, so ``apply --publish`` first refuses namespaces with unpublished
changes it did not make (working items that differ from both the latest release and the files)
unless ``--include-unpublished``. Values of keys that look secret are masked in what is printed
and exported unless ``--show-secrets``. The token comes from ``APOLLO_OPENAPI_TOKEN`` only.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._exceptions import ApolloConnectionError, ApolloError
from ..openapi import (
    ApolloOpenApiClient,
    NamespaceLockedError,
    OpenApiAuthError,
    OpenApiError,
    OpenApiForbiddenError,
    PublishNotAllowedError,
)
from .common import (
    EXIT_AUTH,
    EXIT_CHANGES,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_REJECTED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    PROG,
    CommandFailed,
    positive_seconds,
)

__all__ = ["MASK", "add_command", "run"]

MASK = "******"
_RAW = frozenset({"json", "yaml", "yml", "xml", "txt"})
_SECRET = re.compile(
    r"(?i)(pass(word|wd)?|pwd|secret|token|credential|private[-_.]?key|api[-_.]?key|"
    r"access[-_.]?key|auth)"
)
_CONTENT = "content"


def looks_secret(key: str) -> bool:
    """Whether a key's name suggests its value is a secret (password, token, key, ...)."""
    return _SECRET.search(key) is not None


def is_raw(namespace: str) -> bool:
    """Whether the namespace is kept as raw text (``x.json``, ``x.yaml``, ...)."""
    return "." in namespace and namespace.rsplit(".", 1)[1].lower() in _RAW


def add_command(sub: Any) -> None:
    """Add ``config`` (``export``, ``diff``, ``apply``) to the CLI's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group(
        "the portal (token from APOLLO_OPENAPI_TOKEN only: a flag would show in `ps`)"
    )
    group.add_argument("--portal-url", help="the portal's URL (APOLLO_PORTAL_URL)")
    group.add_argument("--app-id", help="the appId (APP_ID)")
    group.add_argument(
        "--operator", help="portal user changes are made as (APOLLO_OPENAPI_OPERATOR)"
    )
    group.add_argument(
        "--timeout", type=positive_seconds, default=None, help="seconds per request (10)"
    )
    common.add_argument(
        "--show-secrets",
        action="store_true",
        help="print and export the values of secret-looking keys instead of masking them",
    )
    common.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv)")
    common.add_argument("dir", metavar="DIR", help="DIR/<env>/<cluster>/<namespace> files")

    config = sub.add_parser(
        "config",
        help="configuration as code: export, diff and apply DIR through the portal OpenAPI",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    export = actions.add_parser("export", parents=[common], help="write Apollo's items to DIR")
    export.add_argument("--env", action="append", help="env to export (all by default)")
    export.add_argument("--cluster", action="append", help="cluster to export (all)")
    diff = actions.add_parser("diff", parents=[common], help="show what apply would change")
    diff.add_argument(
        "--exit-code", action="store_true", help=f"exit {EXIT_CHANGES} when there are changes"
    )
    apply = actions.add_parser("apply", parents=[common], help="make Apollo's items match DIR")
    apply.add_argument("--publish", action="store_true", help="release each changed namespace")
    apply.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    apply.add_argument(
        "--include-unpublished",
        action="store_true",
        help="publish even if others left unpublished changes in a namespace",
    )
    apply.add_argument("--title", default="aioapollo config apply", help="release title")
    apply.add_argument("--comment", default="", help="release comment")
    apply.add_argument(
        "--emergency",
        action="store_true",
        help="emergency publish (allowed past the namespace lock's four-eyes rule)",
    )


# ------------------------------------------------------------------------------ the files


@dataclass
class Target:
    """One namespace of the desired state."""

    env: str
    cluster: str
    namespace: str
    path: Path
    values: dict[str, str] = field(repr=False)  # {"content": text} for a raw namespace

    @property
    def name(self) -> str:
        return f"{self.env}/{self.cluster}/{self.namespace}"


def _load_mapping(path: Path, text: str) -> dict[str, str]:
    data: Any
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError:
        try:
            import yaml
        except ImportError:
            raise CommandFailed(
                EXIT_USAGE,
                f"{path} is not JSON, and YAML needs PyYAML: pip install 'aioapollo[yaml]'",
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CommandFailed(EXIT_USAGE, f"{path} is not valid YAML or JSON: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CommandFailed(
            EXIT_USAGE, f"{path}: a properties namespace is a mapping of key: value"
        )
    result = {}
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise CommandFailed(
                EXIT_USAGE,
                f'{path}: key {key!r}: values must be strings (quote them: "30", "true"), '
                "so YAML cannot turn 010 into 8 or on into true",
            )
        if value == MASK and looks_secret(key):
            raise CommandFailed(
                EXIT_USAGE,
                f"{path}: key {key!r} holds the export mask, not a value; put the real value "
                "there (or export with --show-secrets)",
            )
        result[key] = value
    return result


def load_targets(root: Path) -> list[Target]:
    """The desired state under ``root`` (sorted by env, cluster, namespace)."""
    if not root.is_dir():
        raise CommandFailed(EXIT_USAGE, f"{root} is not a directory")
    targets = []
    for env_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for cluster_dir in sorted(p for p in env_dir.iterdir() if p.is_dir()):
            for path in sorted(p for p in cluster_dir.iterdir() if p.is_file()):
                if path.name.startswith("."):
                    continue
                try:
                    text = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise CommandFailed(EXIT_USAGE, f"cannot read {path}: {exc}") from None
                values = {_CONTENT: text} if is_raw(path.name) else _load_mapping(path, text)
                targets.append(Target(env_dir.name, cluster_dir.name, path.name, path, values))
    if not targets:
        raise CommandFailed(EXIT_USAGE, f"{root} has no DIR/<env>/<cluster>/<namespace> files")
    return targets


# ------------------------------------------------------------------------------ planning


@dataclass
class Plan:
    """What ``apply`` does to one namespace."""

    target: Target
    working: dict[str, str] = field(repr=False)
    released: dict[str, str] | None = field(repr=False)
    lock_holder: str | None = None

    @property
    def upserts(self) -> dict[str, str]:
        wanted = self.target.values
        return {k: v for k, v in wanted.items() if self.working.get(k) != v}

    @property
    def deletes(self) -> list[str]:
        return sorted(k for k in self.working if k not in self.target.values)

    @property
    def others_pending(self) -> list[str]:
        """Unpublished working changes that the files do not ask for (someone else's)."""
        released = self.released or {}
        keys = set(self.working) | set(released)
        return sorted(
            k
            for k in keys
            if self.working.get(k) != released.get(k)
            and self.working.get(k) != self.target.values.get(k)
        )

    @property
    def needs_release(self) -> bool:
        return (self.released or {}) != self.target.values or self.released is None


async def _plan(api: ApolloOpenApiClient, app_id: str, target: Target) -> Plan:
    where = {"env": target.env, "app_id": app_id, "cluster": target.cluster}
    ns = await api.get_namespace(**where, namespace=target.namespace)
    release = await api.latest_release(**where, namespace=target.namespace)
    lock = await api.get_namespace_lock(**where, namespace=target.namespace)
    return Plan(
        target,
        dict(ns.values),
        None if release is None else dict(release.configurations),
        lock.locked_by if lock.is_locked else None,
    )


def _show(key: str, value: str | None, show_secrets: bool) -> str:
    if value is None:
        return "(absent)"
    if looks_secret(key) and not show_secrets:
        return MASK
    return json.dumps(value, ensure_ascii=False)


def describe(plan: Plan, show_secrets: bool) -> list[str]:
    """The lines ``diff`` prints for one namespace (empty when there is nothing to do)."""
    lines: list[str] = []
    target = plan.target
    if is_raw(target.namespace):
        old = plan.working.get(_CONTENT, "")
        new = target.values[_CONTENT]
        if old != new:
            lines.append(f"  ~ content ({len(old.splitlines())} -> {len(new.splitlines())} lines)")
            lines.extend(
                "    " + line.rstrip("\n")
                for line in difflib.unified_diff(
                    old.splitlines(), new.splitlines(), "apollo", "file", lineterm="", n=1
                )
            )
    else:
        for key, value in sorted(plan.upserts.items()):
            old_value = plan.working.get(key)
            if old_value is None:
                lines.append(f"  + {key} = {_show(key, value, show_secrets)}")
            else:
                lines.append(
                    f"  ~ {key}: {_show(key, old_value, show_secrets)} -> "
                    f"{_show(key, value, show_secrets)}"
                )
        lines.extend(
            f"  - {key} (was {_show(key, plan.working[key], show_secrets)})" for key in plan.deletes
        )
    if plan.others_pending:
        lines.append(f"  ! unpublished changes in Apollo: {', '.join(plan.others_pending)}")
    if plan.lock_holder:
        lines.append(f"  ! locked by {plan.lock_holder} (namespace lock)")
    return lines


# ------------------------------------------------------------------------------ commands


def run(args: argparse.Namespace) -> int:
    """Run ``config ACTION``; returns the exit code (raises ``CommandFailed``)."""
    app_id = args.app_id or os.environ.get("APP_ID")
    if not app_id:
        raise CommandFailed(EXIT_USAGE, "no appId: set APP_ID or pass --app-id")
    overrides: dict[str, Any] = {"retries": 3}
    if args.portal_url:
        overrides["portal_url"] = args.portal_url
    if args.operator:
        overrides["operator"] = args.operator
    if args.timeout:
        overrides["timeout"] = args.timeout
    try:
        api = ApolloOpenApiClient.from_env(**overrides)
    except ValueError as exc:
        raise CommandFailed(EXIT_USAGE, str(exc)) from None
    command = {"export": _export, "diff": _diff, "apply": _apply}[args.config_command]
    result: int = asyncio.run(_guarded(command, api, app_id, args))
    return result


async def _guarded(command: Any, api: ApolloOpenApiClient, app_id: str, args: Any) -> int:
    try:
        async with api:
            code: int = await command(api, app_id, args)
            return code
    except (OpenApiAuthError, OpenApiForbiddenError) as exc:
        raise CommandFailed(EXIT_AUTH, str(exc)) from None
    except (NamespaceLockedError, PublishNotAllowedError) as exc:
        raise CommandFailed(EXIT_REFUSED, str(exc)) from None
    except OpenApiError as exc:
        code = EXIT_UNAVAILABLE if exc.status >= 500 or exc.status == 429 else EXIT_REJECTED
        raise CommandFailed(code, str(exc)) from None
    except (ApolloConnectionError, TimeoutError) as exc:
        raise CommandFailed(EXIT_UNAVAILABLE, str(exc) or "timed out") from None
    except ApolloError as exc:
        raise CommandFailed(EXIT_UNAVAILABLE, str(exc)) from None


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


async def _plans(api: ApolloOpenApiClient, app_id: str, root: Path) -> list[Plan]:
    return [await _plan(api, app_id, target) for target in load_targets(root)]


async def _diff(api: ApolloOpenApiClient, app_id: str, args: argparse.Namespace) -> int:
    changed = 0
    for plan in await _plans(api, app_id, Path(args.dir)):
        lines = describe(plan, args.show_secrets)
        if plan.upserts or plan.deletes:
            changed += 1
        if lines:
            _out(f"{plan.target.name}:")
            for line in lines:
                _out(line)
    _out(f"{changed} namespace(s) would change")
    return EXIT_CHANGES if changed and args.exit_code else EXIT_OK


async def _apply(api: ApolloOpenApiClient, app_id: str, args: argparse.Namespace) -> int:
    plans = await _plans(api, app_id, Path(args.dir))
    operator = api.operator
    refusals = []
    for plan in plans:
        name = plan.target.name
        busy = plan.upserts or plan.deletes or (args.publish and plan.needs_release)
        if busy and plan.lock_holder and plan.lock_holder != operator:
            refusals.append(
                f"{name}: locked by {plan.lock_holder}, who has unpublished changes in it "
                "(the portal's namespace lock); wait until they are published"
            )
        if args.publish and plan.others_pending and not args.include_unpublished:
            refusals.append(
                f"{name}: unpublished changes in Apollo that DIR does not hold "
                f"({', '.join(plan.others_pending)}); a publish would release or overwrite "
                "them: pass --include-unpublished to go ahead"
            )
    if refusals:
        raise CommandFailed(EXIT_REFUSED, "refused, nothing changed:\n  " + "\n  ".join(refusals))
    done = 0
    for plan in plans:
        target = plan.target
        lines = describe(plan, args.show_secrets)
        will_release = args.publish and plan.needs_release
        if not (plan.upserts or plan.deletes or will_release):
            continue
        done += 1
        _out(f"{target.name}:{' (dry run)' if args.dry_run else ''}")
        for line in lines:
            _out(line)
        if args.dry_run:
            if will_release:
                _out("  would publish")
            continue
        where = {
            "env": target.env,
            "app_id": app_id,
            "cluster": target.cluster,
            "namespace": target.namespace,
        }
        if plan.upserts:
            await api.set_items(**where, items=plan.upserts)
        if plan.deletes:
            await api.delete_items(**where, keys=plan.deletes)
        if will_release:
            release = await api.publish(
                **where, title=args.title, comment=args.comment, emergency=args.emergency
            )
            _out(f"  published release {release.id}")
    verb = "would change" if args.dry_run else "changed"
    _out(f"{done} namespace(s) {verb}")
    return EXIT_OK


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_YAML_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "null", "y", "n"})


def _dump_mapping(values: Mapping[str, str]) -> str:
    """YAML (one ``key: "value"`` line each, sorted; every value double-quoted, so nothing is
    read back as a number or a boolean), or JSON when PyYAML is not installed to read it."""
    try:
        import yaml  # noqa: F401 - only to know `apply` can read YAML back
    except ImportError:
        return json.dumps(dict(sorted(values.items())), indent=2, ensure_ascii=False) + "\n"
    if not values:
        return "{}\n"
    lines = []
    for key, value in sorted(values.items()):
        plain = _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML_WORDS
        shown = key if plain else json.dumps(key, ensure_ascii=False)
        lines.append(f"{shown}: {json.dumps(value, ensure_ascii=False)}\n")
    return "".join(lines)


async def _export(api: ApolloOpenApiClient, app_id: str, args: argparse.Namespace) -> int:
    root = Path(args.dir)
    masked: list[str] = []
    written = 0
    for env_clusters in await api.get_env_clusters(app_id):
        if args.env and env_clusters.env not in args.env:
            continue
        for cluster in env_clusters.clusters:
            if args.cluster and cluster not in args.cluster:
                continue
            for ns in await api.list_namespaces(
                env=env_clusters.env, app_id=app_id, cluster=cluster
            ):
                path = root / env_clusters.env / cluster / ns.name
                path.parent.mkdir(parents=True, exist_ok=True)
                if is_raw(ns.name):
                    text = ns.values.get(_CONTENT, "")
                else:
                    values = dict(ns.values)
                    for key in values:
                        if looks_secret(key) and not args.show_secrets:
                            values[key] = MASK
                            masked.append(f"{env_clusters.env}/{cluster}/{ns.name}:{key}")
                    text = _dump_mapping(values)
                path.write_text(text, encoding="utf-8")
                written += 1
    _out(f"exported {written} namespace(s) to {root}")
    if masked:
        sys.stderr.write(
            f"{PROG}: masked {len(masked)} value(s) of secret-looking keys as {MASK} "
            f"({', '.join(masked)}); `config apply` refuses them until real values are put "
            "back; pass --show-secrets to export the values\n"
        )
    return EXIT_OK

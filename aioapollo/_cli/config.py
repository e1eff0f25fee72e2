"""``aioapollo config export|diff|apply DIR``: Apollo configuration as files, through the portal.

The desired state is ``DIR/<env>/<cluster>/<namespace>``: a properties namespace (a name
without a ``.json``/``.yaml``/``.yml``/``.xml``/``.txt`` suffix) is a YAML or JSON mapping of
key to string; any other namespace is its text (the file's final newline is not part of it),
which must parse as its format. Only the namespaces that have a file are looked at; in each, a
key without a line in the file is deleted.

``diff`` compares the files with the editable items (what ``apply`` changes) and with the
latest active release (what clients are served, and what ``apply --publish`` replaces).
``apply`` changes exactly those items and, with ``--publish``, releases each namespace whose
release differs from the files. Before changing anything, ``apply`` refuses to overwrite or
release unpublished changes it did not make (unless ``--include-unpublished``), namespaces
locked by another editor, and publishes the four-eyes rule would refuse; if it still stops part
way, it says what it changed and exits 8. Values of keys that look secret are masked in what is
printed and exported unless ``--show-secrets``; a file may keep the mask, which stands for the
value the portal holds. The token comes from ``APOLLO_OPENAPI_TOKEN`` only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import ApolloConnectionError, ApolloError
from ..crypto import decryptor_from_env, is_encrypted
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
    EXIT_PARTIAL,
    EXIT_REFUSED,
    EXIT_REJECTED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    PROG,
    CommandFailed,
    positive_seconds,
)
from .configfiles import (
    APOLLO_VALUE_LIMIT,
    CONTENT,
    MASK,
    Target,
    check_lengths,
    dump_mapping,
    export_text,
    is_raw,
    load_targets,
    looks_secret,
)
from .configplan import Plan, describe, make_plan

__all__ = ["MASK", "add_command", "run"]

_OPERATOR_ENV = "APOLLO_OPENAPI_OPERATOR"
_TOKEN_ENV = "APOLLO_OPENAPI_TOKEN"


def _length_limit(text: str) -> int:
    """An ``argparse`` type: a whole number of characters, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of characters (0: no check), got {text!r}"
        )
    return value


def add_command(sub: Any) -> None:
    """Add ``config`` (``export``, ``diff``, ``apply``) to the CLI's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group(
        "the portal (token from APOLLO_OPENAPI_TOKEN only: a flag would show in `ps`)"
    )
    group.add_argument("--portal-url", help="the portal's URL (APOLLO_PORTAL_URL)")
    group.add_argument("--app-id", help="the appId (APP_ID)")
    group.add_argument(
        "--operator", help=f"portal user changes are made as ({_OPERATOR_ENV}); apply needs one"
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
    checked = argparse.ArgumentParser(add_help=False)
    checked.add_argument(
        "--max-value-length",
        type=_length_limit,
        default=APOLLO_VALUE_LIMIT,
        metavar="N",
        help=f"refuse values longer than N characters before sending ({APOLLO_VALUE_LIMIT}, "
        "Apollo's default limit; 0: no check)",
    )

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
    export.add_argument(
        "--for-bootstrap",
        action="store_true",
        help="a snapshot for bootstrap_dir: what clients get (each namespace's latest "
        "release, not the working items), never masked (a secret-looking value in plain "
        "text is refused unless --show-secrets); unreleased namespaces are left out",
    )
    diff = actions.add_parser(
        "diff", parents=[common, checked], help="compare DIR with the items and the release"
    )
    diff.add_argument(
        "--exit-code",
        action="store_true",
        help=f"exit {EXIT_CHANGES} when the items or the release differ from DIR",
    )
    apply = actions.add_parser(
        "apply", parents=[common, checked], help="make Apollo's items match DIR"
    )
    apply.add_argument("--publish", action="store_true", help="release each changed namespace")
    apply.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    apply.add_argument(
        "--include-unpublished",
        action="store_true",
        help="overwrite or publish unpublished changes others left in a namespace",
    )
    apply.add_argument("--title", default="aioapollo config apply", help="release title")
    apply.add_argument("--comment", default="", help="release comment")
    apply.add_argument(
        "--emergency",
        action="store_true",
        help="emergency publish (allowed past the namespace lock's four-eyes rule)",
    )


# ------------------------------------------------------------------------------ commands


def run(args: argparse.Namespace) -> int:
    """Run ``config ACTION``; returns the exit code (raises ``CommandFailed``).

    Everything that can be checked without the portal is checked first: the appId, the token,
    an operator for ``apply``, and the files (format, values' lengths).
    """
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
    if args.config_command == "apply" and not api.operator:
        raise CommandFailed(
            EXIT_USAGE,
            "config apply needs an operator, the portal user its changes are recorded under: "
            f"pass --operator NAME or set {_OPERATOR_ENV}",
        )
    targets: list[Target] = []
    if args.config_command != "export":
        targets = load_targets(Path(args.dir))
        check_lengths(targets, args.max_value_length)
    command = {"export": _export, "diff": _diff, "apply": _apply}[args.config_command]
    result: int = asyncio.run(_guarded(command, api, app_id, args, targets))
    return result


def explain(exc: BaseException) -> tuple[int, str]:
    """The exit code and message for an error of the portal client."""
    if isinstance(exc, OpenApiAuthError):
        said = exc.server_message
        said = f": {said}" if said and said.lower() != "unauthorized" else ""
        return EXIT_AUTH, (
            f"the portal did not accept the token (HTTP 401 from {exc.url}{said}). Either the "
            f"token in {_TOKEN_ENV} is wrong, revoked or for another portal, or the server has "
            "no OpenAPI token configured (`aioapollo serve` accepts one only when started with "
            f"{_TOKEN_ENV} set); a portal's tokens are made under Open Platform Authorization"
        )
    if isinstance(exc, OpenApiForbiddenError):
        return EXIT_AUTH, str(exc)
    if isinstance(exc, NamespaceLockedError | PublishNotAllowedError):
        return EXIT_REFUSED, str(exc)
    if isinstance(exc, OpenApiError) and exc.status == 413:
        return EXIT_REJECTED, (
            f"the portal, or a proxy in front of it, refused the request as too large (HTTP 413 "
            f"from {exc.url}): a value is over its request size limit. Apollo refuses values "
            f"longer than item.value.length.limit ({APOLLO_VALUE_LIMIT:,} characters unless a "
            "portal admin raised it) in any case, which `config` checks before sending unless "
            "--max-value-length is raised or 0"
        )
    if isinstance(exc, OpenApiError):
        code = EXIT_UNAVAILABLE if exc.status >= 500 or exc.status == 429 else EXIT_REJECTED
        return code, str(exc)
    if isinstance(exc, ApolloConnectionError | TimeoutError):
        return EXIT_UNAVAILABLE, str(exc) or "timed out"
    return EXIT_UNAVAILABLE, str(exc)


async def _guarded(
    command: Any, api: ApolloOpenApiClient, app_id: str, args: Any, targets: list[Target]
) -> int:
    try:
        async with api:
            code: int = await command(api, app_id, args, targets)
            return code
    except (ApolloError, TimeoutError) as exc:
        raise CommandFailed(*explain(exc)) from None


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


async def _plans(api: ApolloOpenApiClient, app_id: str, targets: list[Target]) -> list[Plan]:
    # ENC(...) values are compared by their plain text when the environment has the key.
    try:
        decryptor = decryptor_from_env()
    except (ValueError, ImportError) as exc:
        raise CommandFailed(EXIT_USAGE, str(exc)) from None
    return [await make_plan(api, app_id, target, decryptor) for target in targets]


async def _diff(
    api: ApolloOpenApiClient, app_id: str, args: argparse.Namespace, targets: list[Target]
) -> int:
    items = served = differ = 0
    for plan in await _plans(api, app_id, targets):
        lines = describe(plan, args.show_secrets)
        items += plan.items_differ
        served += plan.served_differs
        differ += plan.items_differ or plan.served_differs
        if lines:
            _out(f"{plan.target.name}:")
            for line in lines:
                _out(line)
    _out(
        f"{differ} namespace(s) differ from the files: {items} in the items (`apply` changes "
        f"them), {served} in what clients are served (`apply --publish` releases them)"
    )
    return EXIT_CHANGES if differ and args.exit_code else EXIT_OK


def _refusals(plans: list[Plan], operator: str, args: argparse.Namespace) -> list[str]:
    """Why ``apply`` may not start (each a line naming the namespace); empty: it may."""
    seen_lock = next(((p.target.name, p.lock_holder) for p in plans if p.lock_holder), None)
    refusals = []
    for plan in plans:
        name = plan.target.name
        release = args.publish and plan.served_differs
        if not (plan.items_differ or release):
            continue
        if plan.items_differ and plan.lock_holder and plan.lock_holder != operator:
            refusals.append(
                f"{name}: locked by {plan.lock_holder}, who has unpublished changes in it "
                "(the portal's namespace lock); wait until they are published"
            )
        elif release and not args.emergency:
            if plan.lock_holder == operator:
                why = f"it is locked by {operator}, who edited it and has not published it"
            elif plan.items_differ and seen_lock is not None:
                why = (
                    f"the portal's namespace lock is on ({seen_lock[0]} is locked by "
                    f"{seen_lock[1]}), so editing it makes {operator} its lock holder"
                )
            else:
                why = ""
            if why:
                refusals.append(
                    f"{name}: {why}, and the four-eyes rule does not let the operator who "
                    "edited a namespace publish it: apply without --publish and have another "
                    "operator publish, or pass --emergency if the portal allows emergency "
                    "publishes"
                )
        theirs = plan.others_pending if release else plan.overwritten
        if theirs and not args.include_unpublished:
            what = "a publish would release them" if release else "apply would overwrite them"
            refusals.append(
                f"{name}: unpublished changes in Apollo that DIR does not hold "
                f"({', '.join(theirs)}); {what}: pass --include-unpublished to go ahead"
            )
    return refusals


@dataclass
class _Progress:
    """What ``apply`` has done so far, to say exactly what was left if it stops part way."""

    plans: list[Plan]
    current: Plan | None = None
    edited: dict[str, list[str]] = field(default_factory=dict)
    published: dict[str, int] = field(default_factory=dict)
    in_flight: str | None = None  # the request under way: it may or may not have been made

    @property
    def changed(self) -> bool:
        return bool(self.published or any(self.edited.values()))

    def report(self, exc: BaseException, lock_holder: str | None) -> str:
        if not _ambiguous(exc):
            self.in_flight = None  # refused: not made
        lines = []
        started = False
        for plan in self.plans:
            name = plan.target.name
            edited = self.edited.get(name, [])
            if plan is self.current:
                started = True
                parts = [f"items changed: {', '.join(edited)}" if edited else "no item changed"]
                if self.in_flight:
                    parts.append(f"{self.in_flight} failed and may or may not have been made")
                left = [
                    k
                    for k in [*sorted(plan.upserts), *plan.deletes]
                    if k not in edited and self.in_flight not in (f"setting {k}", f"deleting {k}")
                ]
                if left:
                    parts.append(f"not changed: {', '.join(left)}")
                if self.in_flight != "the publish":
                    parts.append("not published")
                if lock_holder:
                    parts.append(
                        f"locked by {lock_holder} (the namespace lock) until another operator "
                        "publishes it"
                    )
                lines.append(f"{name}: {'; '.join(parts)}")
            elif name in self.published:
                changed = f" (items changed: {', '.join(edited)})" if edited else ""
                lines.append(f"{name}: published release {self.published[name]}{changed}")
            elif started:
                lines.append(f"{name}: not touched")
        code, cause = explain(exc)
        del code
        hint = ""
        if isinstance(exc, PublishNotAllowedError):
            hint = (
                " Have another operator publish it (in the portal, or `config apply --publish "
                "--operator OTHER`), or run again with --emergency if the portal allows "
                "emergency publishes."
            )
        return (
            "config apply stopped part way, and Apollo WAS changed:\n  "
            + "\n  ".join(lines)
            + f"\nbecause: {cause}.{hint} `config diff` shows what is left; running the same "
            "apply again is safe"
        )


async def _lock_of(api: ApolloOpenApiClient, app_id: str, plan: Plan) -> str | None:
    try:
        lock = await api.get_namespace_lock(**plan.where(app_id))
    except (ApolloError, TimeoutError):
        return None
    return lock.locked_by if lock.is_locked else None


def _ambiguous(exc: BaseException) -> bool:
    """Whether a failed write may still have been made (no reply, or a 5xx)."""
    return not (isinstance(exc, OpenApiError) and exc.status < 500)


async def _apply(
    api: ApolloOpenApiClient, app_id: str, args: argparse.Namespace, targets: list[Target]
) -> int:
    plans = await _plans(api, app_id, targets)
    operator = api.operator
    assert operator is not None  # checked by run()
    refusals = _refusals(plans, operator, args)
    if refusals:
        raise CommandFailed(EXIT_REFUSED, "refused, nothing changed:\n  " + "\n  ".join(refusals))
    progress = _Progress(plans)
    done = 0
    for plan in plans:
        lines = describe(plan, args.show_secrets)
        will_release = args.publish and plan.served_differs
        if not (plan.items_differ or will_release):
            continue
        done += 1
        _out(f"{plan.target.name}:{' (dry run)' if args.dry_run else ''}")
        for line in lines:
            _out(line)
        if args.dry_run:
            if will_release:
                _out("  would publish")
            continue
        progress.current = plan
        try:
            await _apply_one(api, app_id, plan, will_release, args, progress)
        except (ApolloError, TimeoutError) as exc:
            if not progress.changed and not (progress.in_flight and _ambiguous(exc)):
                raise  # nothing was changed: the error's own exit code
            holder = await _lock_of(api, app_id, plan)
            raise CommandFailed(EXIT_PARTIAL, progress.report(exc, holder)) from None
        progress.current = None
    if not args.publish and not args.dry_run:
        stale = [p.target.name for p in plans if p.served_differs]
        if stale:
            _out(
                f"note: clients are served releases that differ from the files in "
                f"{', '.join(stale)}; `config apply --publish` releases the files"
            )
    verb = "would change" if args.dry_run else "changed"
    _out(f"{done} namespace(s) {verb}")
    return EXIT_OK


async def _apply_one(
    api: ApolloOpenApiClient,
    app_id: str,
    plan: Plan,
    will_release: bool,
    args: argparse.Namespace,
    progress: _Progress,
) -> None:
    """Edit one namespace's items, one request per key, then publish it if asked."""
    where = plan.where(app_id)
    edited = progress.edited.setdefault(plan.target.name, [])
    for key, value in sorted(plan.upserts.items()):
        progress.in_flight = f"setting {key}"
        await api.update_item(**where, key=key, value=value, create=True)
        edited.append(key)
    for key in plan.deletes:
        progress.in_flight = f"deleting {key}"
        await api.delete_items(**where, keys=[key])
        edited.append(key)
    progress.in_flight = None
    if will_release:
        progress.in_flight = "the publish"
        release = await api.publish(
            **where, title=args.title, comment=args.comment, emergency=args.emergency
        )
        progress.in_flight = None
        progress.published[plan.target.name] = release.id
        _out(f"  published release {release.id}")


def _refuse_plain_secrets(path: Path, values: Mapping[str, str], shown: bool) -> None:
    """A snapshot is served as it is: a mask in it would be served as the value."""
    plain = sorted(k for k, v in values.items() if looks_secret(k) and not is_encrypted(v))
    if plain and not shown:
        raise CommandFailed(
            EXIT_USAGE,
            f"{path}: secret-looking key(s) {', '.join(plain)} hold plain text, and a "
            "bootstrap snapshot cannot mask them (clients would read the mask): store them "
            "as ENC(...) with a decryptor, or pass --show-secrets and keep the snapshot in a "
            "Kubernetes Secret rather than a ConfigMap",
        )


async def _export(
    api: ApolloOpenApiClient, app_id: str, args: argparse.Namespace, targets: list[Target]
) -> int:
    del targets  # export reads nothing from DIR
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
                source: Mapping[str, str] = ns.values
                if args.for_bootstrap:
                    release = await api.latest_release(
                        env=env_clusters.env, app_id=app_id, cluster=cluster, namespace=ns.name
                    )
                    if release is None:
                        continue
                    source = release.configurations
                    if not is_raw(ns.name):
                        _refuse_plain_secrets(path, source, args.show_secrets)
                path.parent.mkdir(parents=True, exist_ok=True)
                if is_raw(ns.name):
                    text = export_text(source.get(CONTENT, ""))
                else:
                    values = dict(source)
                    for key in values:
                        # ENC(...) is safe to keep in files (and git): it stays as it is.
                        if (
                            looks_secret(key)
                            and not args.show_secrets
                            and not is_encrypted(values[key])
                        ):
                            values[key] = MASK
                            masked.append(f"{env_clusters.env}/{cluster}/{ns.name}:{key}")
                    text = dump_mapping(values)
                path.write_text(text, encoding="utf-8")
                written += 1
    _out(f"exported {written} namespace(s) to {root}")
    if masked:
        sys.stderr.write(
            f"{PROG}: masked {len(masked)} value(s) of secret-looking keys as {MASK} "
            f"({', '.join(masked)}); a mask left in a file keeps the value the portal holds; "
            "pass --show-secrets to export the values\n"
        )
    return EXIT_OK

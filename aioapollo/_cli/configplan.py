"""What ``aioapollo config`` compares: a namespace's files against its editable items and its
latest active release, and the lines ``diff`` (and ``apply``) print for the differences."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..crypto import Fernet, Jasypt, unwrap
from ..openapi import ApolloOpenApiClient
from .common import EXIT_USAGE, CommandFailed
from .configfiles import CONTENT, MASK, Target, is_raw, looks_secret, value_length

__all__ = ["Plan", "describe", "make_plan"]


@dataclass
class Plan:
    """What ``apply`` does to one namespace."""

    target: Target
    working: dict[str, str] = field(repr=False)
    released: dict[str, str] | None = field(repr=False)
    release_id: int | None = None
    lock_holder: str | None = None
    #: The file's values, each export mask replaced by the value the portal holds.
    wanted: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def upserts(self) -> dict[str, str]:
        return {k: v for k, v in self.wanted.items() if self.working.get(k) != v}

    @property
    def deletes(self) -> list[str]:
        return sorted(k for k in self.working if k not in self.wanted)

    @property
    def items_differ(self) -> bool:
        """Whether the editable items differ from the files (``apply`` changes them)."""
        return self.working != self.wanted

    @property
    def served_differs(self) -> bool:
        """Whether what clients are served differs from the files (``--publish`` releases)."""
        return self.released != self.wanted

    @property
    def others_pending(self) -> list[str]:
        """Unpublished working changes that the files do not ask for (someone else's)."""
        released = self.released or {}
        keys = set(self.working) | set(released)
        return sorted(
            k
            for k in keys
            if self.working.get(k) != released.get(k)
            and (self.working.get(k) != self.wanted.get(k) or k in self.target.masked)
        )

    @property
    def overwritten(self) -> list[str]:
        """Those of :attr:`others_pending` that ``apply`` would change."""
        changed = set(self.upserts) | set(self.deletes)
        return [k for k in self.others_pending if k in changed]

    def where(self, app_id: str) -> dict[str, str]:
        target = self.target
        return {
            "env": target.env,
            "app_id": app_id,
            "cluster": target.cluster,
            "namespace": target.namespace,
        }


def _wanted(target: Target, working: Mapping[str, str]) -> dict[str, str]:
    missing = sorted(k for k in target.masked if k not in working)
    if missing:
        raise CommandFailed(
            EXIT_USAGE,
            f"{target.path}: {', '.join(missing)} hold(s) the export mask {MASK}, which stands "
            "for the value the portal holds, but the portal holds none; put the real value in "
            "the file (or export with --show-secrets)",
        )
    return {k: working[k] if k in target.masked else v for k, v in target.values.items()}


def same_plain_text(
    wanted: dict[str, str],
    held: list[Mapping[str, str] | None],
    decryptor: Jasypt | Fernet | None,
) -> int:
    """Where the files and the portal hold different ``ENC(...)`` texts of the same plain
    text (each encryption has a fresh salt), take the portal's into ``wanted``: no change.

    ``held``: the working items, then the latest release. Returns how many were taken. The
    plain texts are compared here and never kept, printed or logged.
    """
    if decryptor is None:
        return 0
    plain: dict[str, str | None] = {}

    def decrypt(text: str) -> str | None:
        if text not in plain:
            try:
                plain[text] = decryptor.decrypt(text)
            except ValueError:
                plain[text] = None  # not ours to decrypt: compared as text
        return plain[text]

    taken = 0
    for key, value in wanted.items():
        mine = unwrap(value)
        if mine is None:
            continue
        for items in held:
            theirs = None if items is None else items.get(key)
            if theirs is None:
                continue
            if theirs == value:
                break  # equal as text already
            text = unwrap(theirs)
            if text is not None and (same := decrypt(text)) is not None and same == decrypt(mine):
                wanted[key] = theirs
                taken += 1
                break
    return taken


async def make_plan(
    api: ApolloOpenApiClient,
    app_id: str,
    target: Target,
    decryptor: Jasypt | Fernet | None = None,
) -> Plan:
    where = {"env": target.env, "app_id": app_id, "cluster": target.cluster}
    ns = await api.get_namespace(**where, namespace=target.namespace)
    release = await api.latest_release(**where, namespace=target.namespace)
    lock = await api.get_namespace_lock(**where, namespace=target.namespace)
    working = dict(ns.values)
    released = None if release is None else dict(release.configurations)
    wanted = _wanted(target, working)
    same_plain_text(wanted, [working, released], decryptor)
    return Plan(
        target,
        working,
        released,
        None if release is None else release.id,
        lock.locked_by if lock.is_locked else None,
        wanted,
    )


_SHOWN = 200  # characters of a value printed; the rest is counted, not shown


def _show(key: str, value: str | None, show_secrets: bool) -> str:
    if value is None:
        return "(absent)"
    if looks_secret(key) and not show_secrets:
        return MASK
    if len(value) > _SHOWN:
        cut = json.dumps(value[:_SHOWN], ensure_ascii=False)
        return f"{cut}... ({value_length(value):,} characters)"
    return json.dumps(value, ensure_ascii=False)


def _lines(text: str) -> list[str]:
    """``text`` cut after each ``\\n`` (only there: a text namespace is stored as it is)."""
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _text_changes(old: str, new: str) -> list[str]:
    """A unified diff of two stored texts that shows every difference, whitespace included."""
    if old == new:
        return []
    a, b = _lines(old), _lines(new)
    lines = [f"~ content ({len(a)} -> {len(b)} lines)"]
    for line in difflib.unified_diff(a, b, "apollo", "files", n=1):
        text = line.removesuffix("\n").replace("\r", "^M")
        lines.append(text)
        if not line.endswith("\n"):
            lines.append("\\ No newline at end of file")
    if old.split() == new.split():
        lines.append("(whitespace only; a file's one final newline is not part of the value)")
    return lines


def _changes(
    old: Mapping[str, str], new: Mapping[str, str], raw: bool, show_secrets: bool
) -> list[str]:
    """The lines that turn ``old`` into ``new``, indented under a section header."""
    if raw:
        lines = _text_changes(old.get(CONTENT, ""), new.get(CONTENT, ""))
    else:
        lines = []
        for key, value in sorted(new.items()):
            before = old.get(key)
            if before is None:
                lines.append(f"+ {key} = {_show(key, value, show_secrets)}")
            elif before != value:
                shown = f"{_show(key, before, show_secrets)} -> {_show(key, value, show_secrets)}"
                lines.append(f"~ {key}: {shown}")
        lines.extend(
            f"- {key} (was {_show(key, old[key], show_secrets)})"
            for key in sorted(old)
            if key not in new
        )
    return ["    " + line for line in lines]


def describe(plan: Plan, show_secrets: bool) -> list[str]:
    """The lines ``diff`` prints for one namespace (empty when there is nothing to say)."""
    lines: list[str] = []
    raw = is_raw(plan.target.namespace)
    served = (
        "no release (clients are served nothing)"
        if plan.released is None
        else f"release {plan.release_id} (served to clients)"
    )
    if plan.items_differ and plan.released == plan.working:
        lines.append(f"  items (editable) and {served} -> files:")
        lines.extend(_changes(plan.working, plan.wanted, raw, show_secrets))
    else:
        if plan.items_differ:
            lines.append("  items (editable) -> files:")
            lines.extend(_changes(plan.working, plan.wanted, raw, show_secrets))
        elif plan.served_differs:
            lines.append("  the items (editable) match the files")
        if plan.served_differs:
            lines.append(f"  {served} -> files (`apply --publish` releases the files):")
            lines.extend(_changes(plan.released or {}, plan.wanted, raw, show_secrets))
        elif plan.items_differ:
            lines.append(f"  {served} matches the files")
    if plan.others_pending:
        lines.append(f"  ! unpublished changes in Apollo: {', '.join(plan.others_pending)}")
    if plan.lock_holder:
        lines.append(f"  ! locked by {plan.lock_holder} (namespace lock)")
    return lines

"""What a process holds of each namespace, as a heartbeat names it (leader and follower)."""

from __future__ import annotations

from .._core.store import NamespaceStore

__all__ = ["held_states"]


def held_states(store: NamespaceStore) -> dict[str, tuple[int, str | None]]:
    """``{namespace: (notification_id, release_key)}`` as held now."""
    return {
        name: (r.notification_id, r.snapshot.release_key if r.snapshot is not None else None)
        for name, r in store.records.items()
    }

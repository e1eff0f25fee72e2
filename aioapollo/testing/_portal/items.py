"""Working items: read, create, change and delete, with their change history."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..._apollo.wire import namespace_format
from .core import PortalCore
from .model import ItemChange, PortalError, bad, missing
from .text import check_syntax, parse_text

__all__ = ["ItemsMixin"]


class ItemsMixin(PortalCore):
    """Working items."""

    def history(self, app_id: str, cluster: str, namespace: str) -> list[ItemChange]:
        """The changes made to the namespace's working items, oldest first."""
        with self.store.lock:
            space, _name, _branch = self._space(app_id, cluster, namespace)
            return list(space.history)

    def item_json(self, app_id: str, cluster: str, namespace: str, key: str) -> dict[str, Any]:
        with self.store.lock:
            space, name, _branch = self._space(app_id, cluster, namespace)
            item = space.items.get(key)
            if item is None:
                raise _no_item(app_id, cluster, name, key)
            return item.to_json()

    def items_page(
        self, app_id: str, cluster: str, namespace: str, page: int, size: int
    ) -> dict[str, Any]:
        with self.store.lock:
            space, _name, _branch = self._space(app_id, cluster, namespace)
            items = sorted(space.items.values(), key=lambda item: item.line_num)
            chunk = items[page * size : (page + 1) * size] if size > 0 else []
            return {
                "page": page,
                "size": size,
                "total": len(items),
                "content": [item.to_json() for item in chunk],
            }

    def _item_fields(self, body: Mapping[str, Any]) -> tuple[str, str, str | None]:
        key, value, comment = body.get("key"), body.get("value"), body.get("comment")
        if not isinstance(key, str) or not key.strip():
            raise bad("key should not be null or empty")
        if not isinstance(value, str):
            raise bad("value should not be null")
        if comment is not None and not isinstance(comment, str):
            raise bad("comment must be a string")
        if comment is not None and len(comment) > 256:
            raise bad("Comment length should not exceed 256 characters")
        self.check_value(value)
        return key, value, comment

    def create_item(
        self,
        app_id: str,
        cluster: str,
        namespace: str,
        body: Mapping[str, Any],
        operator: str | None,
    ) -> dict[str, Any]:
        key, value, comment = self._item_fields(body)
        who = self.operator(operator, body.get("dataChangeCreatedBy"))
        with self.store.lock:
            space, name, _branch = self._space(app_id, cluster, namespace)
            if key in space.items:
                raise bad(f"item already exists for itemKey:{key}")
            self._edit(space, name, who)
            self._upsert(space, key, value, comment, who)
            self._unlock_if_clean(space)
            return space.items[key].to_json()

    def update_item(
        self,
        app_id: str,
        cluster: str,
        namespace: str,
        key: str,
        body: Mapping[str, Any],
        operator: str | None,
        create: bool,
    ) -> None:
        body_key, value, comment = self._item_fields(body)
        if body_key != key:
            raise bad("Key in path and payload is not consistent")
        payload = body.get("dataChangeLastModifiedBy") or (
            body.get("dataChangeCreatedBy") if create else None
        )
        who = self.operator(operator, payload)
        with self.store.lock:
            space, name, _branch = self._space(app_id, cluster, namespace)
            if key not in space.items and not create:
                raise _no_item(app_id, cluster, name, key)
            self._edit(space, name, who)
            self._upsert(space, key, value, comment, who)
            self._unlock_if_clean(space)

    def delete_item(
        self, app_id: str, cluster: str, namespace: str, key: str, operator: str | None
    ) -> None:
        who = self.operator(operator, None)
        with self.store.lock:
            space, name, _branch = self._space(app_id, cluster, namespace)
            if key not in space.items:
                raise _no_item(app_id, cluster, name, key)
            self._edit(space, name, who)
            self._delete(space, key, who)
            self._unlock_if_clean(space)

    # ------------------------------------------------------------ text, diff, sync, revert

    def batch_update_by_text(
        self,
        app_id: str,
        cluster: str,
        namespace: str,
        body: Mapping[str, Any],
        operator: str | None,
    ) -> None:
        """Replace the working items by those of a text (``configText``), as the portal's
        text editor does: keys missing from a properties text are deleted."""
        text = body.get("configText")
        if not isinstance(text, str):
            raise bad("configText can not be null")
        who = self.operator(operator, body.get("operator"))
        with self.store.lock:
            space, name, _branch = self._space(app_id, cluster, namespace)
            wanted = parse_text(name, text)
            for value in wanted.values():
                self.check_value(value)
            if wanted == space.values():
                return
            self._edit(space, name, who)
            self._replace_items(space, wanted, who)
            self._unlock_if_clean(space)

    def syntax_check(
        self, app_id: str, cluster: str, namespace: str, body: Mapping[str, Any]
    ) -> None:
        """400 unless ``configText`` parses in the namespace's format."""
        text = body.get("configText")
        if not isinstance(text, str):
            raise bad("configText can not be null")
        with self.store.lock:
            _space, name, _branch = self._space(app_id, cluster, namespace)
        check_syntax(namespace_format(name), text)

    def _targets(self, body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        targets, items = body.get("syncToNamespaces"), body.get("syncItems")
        if not isinstance(targets, list) or not targets:
            raise bad("syncToNamespaces can not be empty")
        if not isinstance(items, list):
            raise bad("syncItems can not be null")
        wanted: dict[str, str] = {}
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                raise bad("every sync item needs a key")
            value = item.get("value")
            if not isinstance(value, str):
                raise bad("value should not be null")
            self.check_value(value)
            wanted[item["key"]] = value
        for target in targets:
            if not isinstance(target, dict) or not all(
                isinstance(target.get(f), str) for f in ("appId", "clusterName", "namespaceName")
            ):
                raise bad("a target namespace needs appId, env, clusterName and namespaceName")
        return targets, wanted

    def compare_items(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """For each target namespace, what syncing ``syncItems`` into it would change."""
        targets, wanted = self._targets(body)
        found = []
        with self.store.lock:
            for target in targets:
                identifier = {
                    k: target.get(k) for k in ("appId", "env", "clusterName", "namespaceName")
                }
                diff: dict[str, Any] = {"code": 200, "namespace": identifier}
                try:
                    self.check_env(str(target.get("env", self.env)))
                    space, _name, _branch = self._space(
                        target["appId"], target["clusterName"], target["namespaceName"]
                    )
                except PortalError as exc:
                    found.append({**diff, "code": exc.status, "message": exc.message})
                    continue
                create = [k for k in wanted if k not in space.items]
                update = [
                    k for k in wanted if k in space.items and space.items[k].value != wanted[k]
                ]
                diff["createItems"] = [_plain(k, wanted[k]) for k in create]
                diff["updateItems"] = [_plain(k, wanted[k]) for k in update]
                diff["deleteItems"] = []
                found.append(diff)
        return found

    def sync_items(self, body: Mapping[str, Any], operator: str) -> list[tuple[str, str]]:
        """Set ``syncItems`` in every target namespace; returns the (appId, namespace) pairs
        changed (the caller checks grants first)."""
        targets, wanted = self._targets(body)
        with self.store.lock:
            spaces = []
            for target in targets:
                self.check_env(str(target.get("env", self.env)))
                space, name, _branch = self._space(
                    target["appId"], target["clusterName"], target["namespaceName"]
                )
                spaces.append((target["appId"], name, space))
            for _app_id, name, space in spaces:
                if any(
                    space.items.get(k) is None or space.items[k].value != v
                    for k, v in wanted.items()
                ):
                    self._edit(space, name, operator)
                    for key, value in wanted.items():
                        self._upsert(space, key, value, None, operator)
                    self._unlock_if_clean(space)
            return [(app_id, name) for app_id, name, _space in spaces]

    def revert_items(self, app_id: str, cluster: str, namespace: str, operator: str | None) -> None:
        """Throw away unpublished changes: the items become the latest release again."""
        who = self.operator(operator, None)
        with self.store.lock:
            space, _name, _branch = self._space(app_id, cluster, namespace)
            published = self._published(space)
            if published is None:
                raise bad("namespace has no release to revert to")
            if space.values() == published:
                raise bad("no changes to revert")
            self._replace_items(space, published, who)
            space.lock = None

    def commits(
        self, app_id: str, cluster: str, namespace: str, key: str | None, page: int, size: int
    ) -> list[dict[str, Any]]:
        """The namespace's commits (one per item change), newest first."""
        with self.store.lock:
            space, name, _branch = self._space(app_id, cluster, namespace)
            changes = [c for c in reversed(space.history) if key is None or c.key == key]
            chunk = changes[page * size : (page + 1) * size] if size > 0 else []
            return [_commit(app_id, cluster, name, change) for change in chunk]


def _no_item(app_id: str, cluster: str, name: str, key: str) -> PortalError:
    return missing(
        f"item not found for appId:{app_id} clusterName:{cluster} namespaceName:{name} "
        f"itemKey:{key}"
    )


def _plain(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": value}


def _commit(app_id: str, cluster: str, name: str, change: ItemChange) -> dict[str, Any]:
    sets: dict[str, list[dict[str, Any]]] = {
        "createItems": [],
        "updateItems": [],
        "deleteItems": [],
    }
    if change.kind == "create":
        sets["createItems"].append(_plain(change.key, change.new_value or ""))
    elif change.kind == "update":
        sets["updateItems"].append(
            {"oldItem": _plain(change.key, change.old_value or ""),
             "newItem": _plain(change.key, change.new_value or "")}
        )  # fmt: skip
    else:
        sets["deleteItems"].append(_plain(change.key, change.old_value or ""))
    return {
        "changeSets": json.dumps(sets, ensure_ascii=False),
        "appId": app_id,
        "clusterName": cluster,
        "namespaceName": name,
        "comment": "",
        "dataChangeCreatedBy": change.operator,
        "dataChangeCreatedTime": change.time,
        "dataChangeLastModifiedBy": change.operator,
        "dataChangeLastModifiedTime": change.time,
    }

"""Working items: read, create, change and delete, with their change history."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .core import PortalCore
from .model import ItemChange, bad, missing

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
                raise missing(
                    f"item not found for appId:{app_id} clusterName:{cluster} "
                    f"namespaceName:{name} itemKey:{key}"
                )
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

    @staticmethod
    def _item_fields(body: Mapping[str, Any]) -> tuple[str, str, str | None]:
        key, value, comment = body.get("key"), body.get("value"), body.get("comment")
        if not isinstance(key, str) or not key.strip():
            raise bad("key should not be null or empty")
        if not isinstance(value, str):
            raise bad("value should not be null")
        if comment is not None and not isinstance(comment, str):
            raise bad("comment must be a string")
        if comment is not None and len(comment) > 256:
            raise bad("Comment length should not exceed 256 characters")
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
                raise missing(
                    f"item not found for appId:{app_id} clusterName:{cluster} "
                    f"namespaceName:{name} itemKey:{key}"
                )
            self._edit(space, name, who)
            self._upsert(space, key, value, comment, who)

    def delete_item(
        self, app_id: str, cluster: str, namespace: str, key: str, operator: str | None
    ) -> None:
        who = self.operator(operator, None)
        with self.store.lock:
            space, name, _branch = self._space(app_id, cluster, namespace)
            if key not in space.items:
                raise missing(
                    f"item not found for appId:{app_id} clusterName:{cluster} "
                    f"namespaceName:{name} itemKey:{key}"
                )
            self._edit(space, name, who)
            self._delete(space, key, who)

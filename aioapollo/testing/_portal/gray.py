"""Gray branches: create, rules, gray publish, merge and abandon."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from .._store import GrayRule
from .core import PortalCore
from .model import Branch, Space, bad, missing

__all__ = ["GrayMixin"]


class GrayMixin(PortalCore):
    """Gray branches."""

    def _main_branch(self, app_id: str, cluster: str, namespace: str) -> tuple[Branch | None, str]:
        """The namespace's branch, if it has one, and its stored name (after adopting
        releases made outside the portal)."""
        name = self._namespace(app_id, cluster, namespace)
        self._sync(app_id, cluster, name)
        return self._branches.get((app_id, cluster, name)), name

    def branch_json(self, app_id: str, cluster: str, namespace: str) -> dict[str, Any] | None:
        with self.store.lock:
            branch, name = self._main_branch(app_id, cluster, namespace)
            if branch is None:
                return None
            return self._namespace_json(app_id, branch.name, name, branch.space)

    def create_branch(
        self, app_id: str, cluster: str, namespace: str, operator: str | None
    ) -> dict[str, Any]:
        who = self.operator(operator, None)
        with self.store.lock:
            branch, name = self._main_branch(app_id, cluster, namespace)
            if branch is None:
                stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S")
                branch_name = f"{stamp}-{next(self._release_ids):016x}"
                branch = Branch(branch_name, Space(), (), who)
                self._branches[(app_id, cluster, name)] = branch
            return self._namespace_json(app_id, branch.name, name, branch.space)

    def _branch(self, app_id: str, cluster: str, namespace: str, branch_name: str) -> tuple[
        Branch, str
    ]:  # fmt: skip
        branch, name = self._main_branch(app_id, cluster, namespace)
        if branch is None or branch.name != branch_name:
            raise missing(f"branch not found for branchName:{branch_name}")
        return branch, name

    def rules_json(
        self, app_id: str, cluster: str, namespace: str, branch_name: str
    ) -> dict[str, Any]:
        with self.store.lock:
            branch, name = self._branch(app_id, cluster, namespace, branch_name)
            return {
                "appId": app_id,
                "clusterName": cluster,
                "namespaceName": name,
                "branchName": branch.name,
                "ruleItems": [
                    {
                        "clientAppId": rule.client_app_id,
                        "clientIpList": sorted(rule.ips),
                        "clientLabelList": sorted(rule.labels),
                    }
                    for rule in branch.rules
                ],
            }

    def set_rules(
        self,
        app_id: str,
        cluster: str,
        namespace: str,
        branch_name: str,
        body: Mapping[str, Any],
        operator: str | None,
    ) -> None:
        self.operator(operator, body.get("dataChangeLastModifiedBy"))
        raw = body.get("ruleItems")
        if not isinstance(raw, list):
            raise bad("ruleItems can not be null")
        rules = []
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("clientAppId"), str):
                raise bad("a rule item needs clientAppId")
            ips, labels = item.get("clientIpList") or [], item.get("clientLabelList") or []
            if not all(isinstance(x, str) for x in [*ips, *labels]):
                raise bad("clientIpList and clientLabelList must hold strings")
            rules.append(GrayRule(item["clientAppId"], frozenset(ips), frozenset(labels)))
        with self.store.lock:
            branch, name = self._branch(app_id, cluster, namespace, branch_name)
            branch.rules = tuple(rules)
            if branch.space.known_key is not None:
                self.store.set_gray_rules(app_id, name, branch.rules, cluster)

    def gray_publish(
        self,
        app_id: str,
        cluster: str,
        namespace: str,
        branch_name: str,
        body: Mapping[str, Any],
        operator: str | None,
        delete_keys: Iterable[str] = (),
    ) -> dict[str, Any]:
        title, comment, who, emergency = self._release_fields(body, operator)
        with self.store.lock:
            branch, name = self._branch(app_id, cluster, namespace, branch_name)
            self._check_publish(branch.space, who, emergency)
            main = self.store.release(app_id, name, cluster)
            data = dict(main.configurations) if main is not None else {}
            data.update(branch.space.values())
            for key in delete_keys:
                data.pop(key, None)
            release_key = self.store.publish_gray(
                app_id, name, data, branch=branch.name, rules=branch.rules, cluster=cluster
            )
            record = self._record(
                release_key, app_id, branch.name, name, title, comment, data, who, gray=True
            )
            previous = self._active(branch.space)
            branch.space.releases.append(record.id)
            branch.space.known_key = release_key
            branch.space.lock = None
            self._history(record, 2, who, previous[-1].id if previous else 0)
            return record.to_json()

    def merge(
        self,
        app_id: str,
        cluster: str,
        namespace: str,
        branch_name: str,
        body: Mapping[str, Any],
        operator: str | None,
        delete_branch: bool,
    ) -> dict[str, Any]:
        title, comment, who, _emergency = self._release_fields(body, operator)
        with self.store.lock:
            branch, name = self._branch(app_id, cluster, namespace, branch_name)
            space = self._spaces[(app_id, cluster, name)]
            for key, value in branch.space.values().items():
                self._upsert(space, key, value, None, who)
            record = self._publish_main(
                app_id, cluster, name, space, title, comment, who, operation=4
            )
            if delete_branch:
                self._drop_branch(app_id, cluster, name, branch)
            return record.to_json()

    def abandon(
        self, app_id: str, cluster: str, namespace: str, branch_name: str, operator: str | None
    ) -> None:
        self.operator(operator, None)
        with self.store.lock:
            branch, name = self._branch(app_id, cluster, namespace, branch_name)
            self._drop_branch(app_id, cluster, name, branch)

    def _drop_branch(self, app_id: str, cluster: str, name: str, branch: Branch) -> None:
        del self._branches[(app_id, cluster, name)]
        if self.store.gray_branch(app_id, name, cluster) is not None:
            self.store.clear_gray(app_id, name, cluster)

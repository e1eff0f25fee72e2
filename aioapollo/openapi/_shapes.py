"""Small helpers shared by the client's operations: path parameters and bodies."""

from __future__ import annotations

from typing import Any

from .._exceptions import ApolloResponseError

__all__ = ["list_of", "ns", "present", "release_body"]


def ns(env: str, app_id: str, cluster: str, namespace: str) -> dict[str, str | int]:
    return {"env": env, "appId": app_id, "clusterName": cluster, "namespaceName": namespace}


def release_body(title: str, comment: str, operator: str, emergency: bool) -> dict[str, Any]:
    if not title:
        raise ValueError("a release needs a title")
    return {
        "releaseTitle": title,
        "releaseComment": comment,
        "releasedBy": operator,
        "isEmergencyPublish": emergency,
    }


def list_of(data: Any, what: str) -> list[Any]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise ApolloResponseError(f"the portal's {what} reply is not a JSON array")
    return data


def present(data: Any, what: str) -> Any:
    if data is None:
        raise ApolloResponseError(f"the portal answered with an empty {what}")
    return data

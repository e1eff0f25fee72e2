"""The Apollo portal OpenAPI as data: each operation's method, path and policy, and JSON schemas.

Written for this project from the official ``apollo-openapi.yaml`` (apolloconfig/apollo-openapi):
paths, parameter names, field names and types follow it. The client builds every request from
:data:`OPERATIONS`, and the test suite validates every request and response against
:data:`SCHEMAS` with a JSON Schema validator, so the two cannot drift apart silently.

An operation is ``original`` when the spec marks it "original openapi": every portal with an
OpenAPI has it. The others came with later portals; a portal without them answers 404 (or
"method not supported"), which the client reports as ``OpenApiUnsupportedError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["OPERATIONS", "SCHEMAS", "Operation", "operation", "schema_for"]

_PREFIX = "/openapi/v1"
_NS = "/envs/{env}/apps/{appId}/clusters/{clusterName}/namespaces/{namespaceName}"
_NS2 = "/apps/{appId}/envs/{env}/clusters/{clusterName}/namespaces/{namespaceName}"
_KEYS = "/apps/{appId}/envs/{env}/accesskeys"


@dataclass(frozen=True)
class Operation:
    """One operation of the portal OpenAPI.

    Attributes:
        id: The spec's ``operationId``.
        method: The HTTP method.
        path: The path template, ``{name}`` for path parameters.
        summary: What it does, in a few words (used in error messages).
        original: Whether every portal has it ("original openapi" in the spec).
        retry: Whether the client may retry it after a timeout, a dropped connection, a 5xx
            or a 429: reads and idempotent updates only.
        query: The query parameters it takes.
        request: Name of the schema of its JSON body (``None``: no body).
        response: Name of the schema of its 200 body (``None``: empty); ``[Name]`` for an array.
    """

    id: str
    method: str
    path: str
    summary: str
    original: bool
    retry: bool
    query: tuple[str, ...] = ()
    request: str | None = None
    response: str | None = None


def _op(
    id: str,
    method: str,
    path: str,
    summary: str,
    *,
    original: bool = True,
    retry: bool | None = None,
    query: tuple[str, ...] = (),
    request: str | None = None,
    response: str | None = None,
) -> Operation:
    return Operation(
        id,
        method,
        _PREFIX + path,
        summary,
        original,
        method == "GET" if retry is None else retry,
        query,
        request,
        response,
    )


_ALL = [
    # apps and environments
    _op("findApps", "GET", "/apps", "list apps", query=("appIds",), response="[OpenAppDTO]"),
    _op("findAppsAuthorized", "GET", "/apps/authorized", "list the token's apps",
        response="[OpenAppDTO]"),
    _op("createApp", "POST", "/apps", "create an app", request="OpenCreateAppDTO"),
    _op("getEnvClusters", "GET", "/apps/{appId}/envclusters", "list an app's envs and clusters",
        response="[OpenEnvClusterDTO]"),
    _op("getApp", "GET", "/apps/{appId}", "read an app", original=False, response="OpenAppDTO"),
    _op("getEnvs", "GET", "/envs", "list the portal's envs", original=False, response="[string]"),
    # clusters
    _op("getCluster", "GET", "/envs/{env}/apps/{appId}/clusters/{clusterName}", "read a cluster",
        response="OpenClusterDTO"),
    _op("createCluster", "POST", "/envs/{env}/apps/{appId}/clusters", "create a cluster",
        request="OpenClusterDTO", response="OpenClusterDTO"),
    # namespaces
    _op("findNamespaces", "GET", "/envs/{env}/apps/{appId}/clusters/{clusterName}/namespaces",
        "list namespaces", query=("fillItemDetail", "extendInfo"), response="[OpenNamespaceDTO]"),
    _op("findNamespace", "GET", _NS, "read a namespace", query=("fillItemDetail", "extendInfo"),
        response="OpenNamespaceDTO"),
    _op("createAppNamespace", "POST", "/apps/{appId}/appnamespaces", "create a namespace",
        query=("operator",), request="OpenAppNamespaceDTO", response="OpenAppNamespaceDTO"),
    _op("getNamespaceLock", "GET", _NS + "/lock", "read a namespace's lock",
        response="OpenNamespaceLockDTO"),
    # items
    _op("getItem", "GET", _NS + "/items/{key}", "read an item", response="OpenItemDTO"),
    _op("getItemByEncodedKey", "GET", _NS + "/encodedItems/{key}", "read an item",
        response="OpenItemDTO"),
    _op("createItem", "POST", _NS + "/items", "create an item", query=("operator",),
        request="OpenItemDTO", response="OpenItemDTO"),
    _op("updateItem", "PUT", _NS + "/items/{key}", "update an item", retry=True,
        query=("createIfNotExists", "operator"), request="OpenItemDTO"),
    _op("updateItemByEncodedKey", "PUT", _NS + "/encodedItems/{key}", "update an item",
        retry=True, query=("createIfNotExists", "operator"), request="OpenItemDTO"),
    _op("deleteItem", "DELETE", _NS + "/items/{key}", "delete an item", retry=True,
        query=("operator",)),
    _op("deleteItemByEncodedKey", "DELETE", _NS + "/encodedItems/{key}", "delete an item",
        retry=True, query=("operator",)),
    _op("findItemsByNamespace", "GET", _NS + "/items", "list items", query=("page", "size"),
        response="OpenItemPageDTO"),
    # releases
    _op("createRelease", "POST", _NS + "/releases", "publish", query=("operator",),
        request="NamespaceReleaseDTO", response="OpenReleaseDTO"),
    _op("loadLatestActiveRelease", "GET", _NS + "/releases/latest", "read the latest release",
        response="OpenReleaseDTO"),
    _op("rollback", "PUT", "/envs/{env}/releases/{releaseId}/rollback", "roll back a release",
        retry=False, query=("operator", "toReleaseId")),
    _op("getReleaseById", "GET", "/envs/{env}/releases/{releaseId}", "read a release by id",
        original=False, response="OpenReleaseDTO"),
    _op("findActiveReleases", "GET", _NS + "/releases/active", "list active releases",
        original=False, query=("page", "size"), response="[OpenReleaseDTO]"),
    # gray releases
    _op("findBranch", "GET", _NS + "/branches", "read the gray branch", query=("extendInfo",),
        response="OpenNamespaceDTO"),
    _op("createBranch", "POST", _NS + "/branches", "create a gray branch", query=("operator",),
        response="OpenNamespaceDTO"),
    _op("deleteBranch", "DELETE", _NS + "/branches/{branchName}", "abandon a gray branch",
        retry=False, query=("operator",)),
    _op("getBranchGrayRules", "GET", _NS + "/branches/{branchName}/rules", "read gray rules",
        response="OpenGrayReleaseRuleDTO"),
    _op("updateBranchRules", "PUT", _NS + "/branches/{branchName}/rules", "set gray rules",
        retry=True, query=("operator",), request="OpenGrayReleaseRuleDTO"),
    _op("createGrayRelease", "POST", _NS + "/branches/{branchName}/releases", "gray publish",
        query=("operator",), request="NamespaceReleaseDTO", response="OpenReleaseDTO"),
    _op("createGrayDelRelease", "POST", _NS + "/branches/{branchName}/gray-del-releases",
        "gray publish with deleted keys", query=("operator",),
        request="NamespaceGrayDelReleaseDTO", response="OpenReleaseDTO"),
    _op("merge", "POST", _NS + "/branches/{branchName}/merge", "merge a gray branch",
        query=("deleteBranch",), request="NamespaceReleaseDTO", response="OpenReleaseDTO"),
    # later portals (spec 0.3.x, Apollo 3.0)
    _op("mergeBranch", "POST", _NS + "/branches/{branchName}", "merge a gray branch",
        original=False, query=("deleteBranch", "operator"), request="NamespaceReleaseDTO",
        response="OpenReleaseDTO"),
    _op("batchUpdateItemsByText", "PUT", _NS + "/items", "replace items by text",
        original=False, retry=True, query=("operator",), request="OpenNamespaceTextModel"),
    _op("syntaxCheck", "POST", _NS + "/items/validation", "validate a namespace's text",
        original=False, retry=True, request="OpenNamespaceTextModel"),
    _op("compareItems", "POST", _NS + "/items/diff", "compare items with namespaces",
        original=False, retry=True, request="OpenNamespaceSyncDTO", response="[OpenItemDiffDTO]"),
    _op("syncItems", "POST", _NS + "/items/synchronize", "synchronize items to namespaces",
        original=False, retry=True, query=("operator",), request="OpenNamespaceSyncDTO"),
    _op("revertItems", "POST", _NS + "/items/revocation", "revert unpublished changes",
        original=False, query=("operator",)),
    _op("createNamespaces", "POST", "/namespaces", "create namespaces in a cluster",
        original=False, query=("operator",), request="[OpenCreateNamespaceDTO]"),
    _op("deleteNamespace", "DELETE", _NS2, "delete a namespace in a cluster", original=False,
        query=("operator",)),
    _op("deleteAppNamespace", "DELETE", "/apps/{appId}/appnamespaces/{namespaceName}",
        "delete a namespace", original=False, query=("operator",)),
    _op("deleteApp", "DELETE", "/apps/{appId}", "delete an app", original=False,
        query=("operator",)),
    _op("deleteCluster", "DELETE", "/envs/{env}/apps/{appId}/clusters/{clusterName}",
        "delete a cluster", original=False, query=("operator",)),
    _op("findReleaseHistoriesByNamespace", "GET", _NS2 + "/releases/histories",
        "list release history", original=False, query=("page", "size"),
        response="[OpenReleaseHistory]"),
    _op("compareRelease", "GET", "/envs/{env}/releases/comparison", "compare two releases",
        original=False, query=("baseReleaseId", "toCompareReleaseId"),
        response="OpenReleaseDiffDTO"),
    _op("findCommits", "GET", _NS2 + "/commits", "list commit history", original=False,
        query=("key", "page", "size"), response="[OpenCommit]"),
    _op("getInstanceCountByNamespace", "GET", _NS + "/instances", "count instances",
        response="integer"),
    _op("getByRelease", "GET", "/envs/{env}/instances/by-release", "list a release's instances",
        original=False, query=("releaseId", "page", "size"), response="OpenInstancePageDTO"),
    _op("getByNamespace", "GET", "/envs/{env}/instances/by-namespace",
        "list a namespace's instances", original=False,
        query=("appId", "clusterName", "namespaceName", "instanceAppId", "page", "size"),
        response="OpenInstancePageDTO"),
    _op("getByReleasesAndNamespaceNotIn", "GET",
        "/envs/{env}/instances/by-namespace-and-releases-not-in",
        "list instances not on given releases", original=False,
        query=("appId", "clusterName", "namespaceName", "releaseIds"),
        response="[OpenInstanceDTO]"),
    _op("findAccessKeys", "GET", _KEYS, "list access keys", original=False,
        response="[OpenAccessKeyDTO]"),
    _op("createAccessKey", "POST", _KEYS, "create an access key", original=False,
        query=("operator",), response="OpenAccessKeyDTO"),
    _op("enableAccessKey", "PUT", _KEYS + "/{accessKeyId}/activation", "enable an access key",
        original=False, retry=True, query=("mode", "operator")),
    _op("disableAccessKey", "PUT", _KEYS + "/{accessKeyId}/deactivation",
        "disable an access key", original=False, retry=True, query=("operator",)),
    _op("deleteAccessKey", "DELETE", _KEYS + "/{accessKeyId}", "delete an access key",
        original=False, retry=True, query=("operator",)),
]  # fmt: skip

#: Every operation the client uses, by ``operationId``.
OPERATIONS: dict[str, Operation] = {op.id: op for op in _ALL}


def operation(op_id: str) -> Operation:
    """The operation with this ``operationId``."""
    return OPERATIONS[op_id]


# ------------------------------------------------------------------------------------ schemas

_S: dict[str, Any] = {"type": "string"}
_B: dict[str, Any] = {"type": "boolean"}
_I: dict[str, Any] = {"type": "integer"}


def _obj(**props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}"}


def _arr(item: dict[str, Any], *, unique: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "items": item}
    if unique:
        schema["uniqueItems"] = True
    return schema


_AUDIT = {
    "dataChangeCreatedBy": _S,
    "dataChangeCreatedByDisplayName": _S,
    "dataChangeLastModifiedBy": _S,
    "dataChangeLastModifiedByDisplayName": _S,
    "dataChangeCreatedTime": _S,
    "dataChangeLastModifiedTime": _S,
}

#: JSON Schemas (draft 2020-12) of the bodies, by the spec's component names; each refers to
#: the others through ``#/$defs/...`` (see :func:`schema_for`).
SCHEMAS: dict[str, dict[str, Any]] = {
    "OpenAppDTO": _obj(
        **_AUDIT,
        name=_S,
        appId=_S,
        orgId=_S,
        orgName=_S,
        ownerName=_S,
        ownerEmail=_S,
        ownerDisplayName=_S,
    ),
    "OpenCreateAppDTO": _obj(
        assignAppRoleToSelf=_B, admins=_arr(_S, unique=True), app=_ref("OpenAppDTO")
    ),
    "OpenItemExtendDTO": _obj(
        namespaceId=_I, isModified=_B, isDeleted=_B, isNewlyAdded=_B, newValue=_S, oldValue=_S
    ),
    "OpenItemDTO": _obj(
        key=_S,
        value=_S,
        type=_I,
        comment=_S,
        lineNum=_I,
        extendInfo=_ref("OpenItemExtendDTO"),
        **_AUDIT,
    ),
    "OpenItemPageDTO": _obj(page=_I, size=_I, total=_I, content=_arr(_ref("OpenItemDTO"))),
    "OpenClusterDTO": _obj(**_AUDIT, name=_S, appId=_S, id=_I, parentClusterId=_I, comment=_S),
    "MapString": {"type": "object", "additionalProperties": _S},
    "OpenReleaseDTO": _obj(
        **_AUDIT,
        id=_I,
        appId=_S,
        clusterName=_S,
        namespaceName=_S,
        name=_S,
        configurations=_ref("MapString"),
        comment=_S,
    ),
    "NamespaceReleaseDTO": _obj(
        releaseTitle=_S, releaseComment=_S, releasedBy=_S, isEmergencyPublish=_B
    ),
    "NamespaceGrayDelReleaseDTO": _obj(
        releaseTitle=_S,
        releaseComment=_S,
        releasedBy=_S,
        isEmergencyPublish=_B,
        grayDelKeys=_arr(_S),
    ),
    "OpenAppNamespaceDTO": _obj(
        **_AUDIT,
        name=_S,
        appId=_S,
        format=_S,
        isPublic=_B,
        appendNamespacePrefix=_B,
        comment=_S,
    ),
    "OpenGrayReleaseRuleItemDTO": _obj(
        clientAppId=_S, clientIpList=_arr(_S, unique=True), clientLabelList=_arr(_S, unique=True)
    ),
    "OpenGrayReleaseRuleDTO": _obj(
        **_AUDIT,
        appId=_S,
        clusterName=_S,
        namespaceName=_S,
        branchName=_S,
        ruleItems=_arr(_ref("OpenGrayReleaseRuleItemDTO"), unique=True),
    ),
    "OpenNamespaceExtendDTO": _obj(isConfigHidden=_B, parentAppId=_S, itemModifiedCnt=_I),
    "OpenNamespaceDTO": _obj(
        **_AUDIT,
        appId=_S,
        clusterName=_S,
        namespaceName=_S,
        comment=_S,
        format=_S,
        isPublic=_B,
        items=_arr(_ref("OpenItemDTO")),
        extendInfo=_ref("OpenNamespaceExtendDTO"),
    ),
    "OpenNamespaceLockDTO": _obj(
        namespaceName=_S, isLocked=_B, lockedBy=_S, isEmergencyPublishAllowed=_B
    ),
    "OpenEnvClusterDTO": _obj(env=_S, clusters=_arr(_S)),
    "ExceptionResponse": _obj(status=_I, message=_S, timestamp=_S, exception=_S),
    # later portals (spec 0.3.x)
    "OpenNamespaceTextModel": _obj(
        appId=_S, env=_S, clusterName=_S, namespaceName=_S, namespaceId=_I, format=_S,
        configText=_S, operator=_S,
    ),
    "OpenNamespaceIdentifier": _obj(appId=_S, env=_S, clusterName=_S, namespaceName=_S),
    "OpenNamespaceSyncDTO": _obj(
        syncToNamespaces=_arr(_ref("OpenNamespaceIdentifier")), syncItems=_arr(_ref("OpenItemDTO"))
    ),
    "OpenItemDiffDTO": _obj(
        code=_I, message=_S, namespace=_ref("OpenNamespaceIdentifier"),
        createItems=_arr(_ref("OpenItemDTO")), updateItems=_arr(_ref("OpenItemDTO")),
        deleteItems=_arr(_ref("OpenItemDTO")),
    ),
    "OpenCreateNamespaceDTO": _obj(appId=_S, env=_S, clusterName=_S, appNamespaceName=_S),
    "OpenReleaseChangeDTO": _obj(changeType=_S, key=_S, newValue=_S, oldValue=_S),
    "OpenReleaseDiffDTO": _obj(changes=_arr(_ref("OpenReleaseChangeDTO"))),
    "OpenInstanceConfigDTO": _obj(
        release=_ref("OpenReleaseDTO"), releaseDeliveryTime=_S, dataChangeLastModifiedTime=_S
    ),
    "OpenInstanceDTO": _obj(
        id=_I, appId=_S, clusterName=_S, dataCenter=_S, ip=_S,
        configs=_arr(_ref("OpenInstanceConfigDTO")), dataChangeCreatedTime=_S,
    ),
    "OpenInstancePageDTO": _obj(
        page=_I, size=_I, total=_I, instances=_arr(_ref("OpenInstanceDTO"))
    ),
    "OpenAccessKeyDTO": _obj(**_AUDIT, id=_I, secret=_S, appId=_S, mode=_I, enabled=_B),
    # the spec leaves these as plain objects; shapes of Apollo's ReleaseHistoryDTO / CommitDTO
    "OpenReleaseHistory": _obj(
        **_AUDIT, id=_I, appId=_S, clusterName=_S, namespaceName=_S, branchName=_S,
        releaseId=_I, previousReleaseId=_I, operation=_I, operationContext={"type": "object"},
    ),
    "OpenCommit": _obj(**_AUDIT, changeSets=_S, appId=_S, clusterName=_S, namespaceName=_S,
                       comment=_S),
}  # fmt: skip


def schema_for(name: str) -> dict[str, Any]:
    """A self-contained JSON Schema for ``name``, ``[name]`` (an array of it) or ``[string]``."""
    if name == "integer":
        return _I
    if name.startswith("["):
        inner = name[1:-1]
        item = _S if inner == "string" else _ref(inner)
        return {"$defs": SCHEMAS, **_arr(item)}
    return {"$defs": SCHEMAS, **_ref(name)}

"""How a namespace's keys map onto a pydantic model's fields (used by the pydantic integration).

Imported only after ``aioapollo.integrations.pydantic`` has checked that pydantic is installed.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from typing import Any

import pydantic
from pydantic.fields import FieldInfo

from .._models import NamespaceSnapshot

__all__ = ["field_key", "snapshot_values"]


def snapshot_values(
    snapshot: NamespaceSnapshot | Mapping[str, Any] | None,
    model: type[pydantic.BaseModel],
    *,
    case_sensitive: bool = False,
    nested_delimiter: str | None = ".",
) -> dict[str, Any]:
    """The model's fields found in a snapshot, ready for validation.

    Properties keys match field names (or aliases), ignoring case unless ``case_sensitive``;
    ``db.host`` fills the field ``host`` of a nested model field ``db`` (``nested_delimiter``).
    A string holding a JSON list or object feeds list/dict/model fields. json/yaml namespaces
    contribute their parsed top-level mapping. Keys that match no field are left out.
    """
    if snapshot is None:
        return {}
    if isinstance(snapshot, NamespaceSnapshot):
        if snapshot.format == "properties":
            items: Mapping[str, Any] = snapshot.items
        elif isinstance(snapshot.data, Mapping):
            items = snapshot.data
        else:
            items = {}
    else:
        items = snapshot
    return _collect(model, items, case_sensitive, nested_delimiter)


def _collect(
    model: type[pydantic.BaseModel],
    items: Mapping[str, Any],
    case_sensitive: bool,
    delimiter: str | None,
) -> dict[str, Any]:
    lookup = dict(items) if case_sensitive else {str(k).lower(): v for k, v in items.items()}
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field_key(name, field)
        wanted = key if case_sensitive else key.lower()
        if wanted in lookup:
            found[key] = _decode(field.annotation, lookup[wanted])
            continue
        nested = _nested_model(field.annotation)
        if nested is not None and delimiter:
            prefix = wanted + delimiter
            sub = {k[len(prefix) :]: v for k, v in lookup.items() if k.startswith(prefix)}
            if sub:
                found[key] = _collect(nested, sub, case_sensitive, delimiter)
    return found


def field_key(name: str, field: FieldInfo) -> str:
    if isinstance(field.validation_alias, str):
        return field.validation_alias
    return field.alias or name


def _unwrap(annotation: Any) -> list[Any]:
    """The alternatives of an annotation: ``X | None`` and ``Annotated[X, ...]`` unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [alt for arg in typing.get_args(annotation) for alt in _unwrap(arg)]
    return [annotation]


def _nested_model(annotation: Any) -> type[pydantic.BaseModel] | None:
    for alt in _unwrap(annotation):
        if isinstance(alt, type) and issubclass(alt, pydantic.BaseModel):
            return alt
    return None


def _decode(annotation: Any, value: Any) -> Any:
    if not isinstance(value, str) or value.lstrip()[:1] not in ("[", "{"):
        return value
    complex_types = (list, dict, set, frozenset, tuple)
    for alt in _unwrap(annotation):
        target = typing.get_origin(alt) or alt
        if (isinstance(target, type) and issubclass(target, complex_types)) or (
            isinstance(target, type) and issubclass(target, pydantic.BaseModel)
        ):
            try:
                return json.loads(value)
            except ValueError:
                return value  # pydantic reports the field as invalid
    return value

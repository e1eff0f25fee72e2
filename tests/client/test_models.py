"""Snapshots, typed reads and diffs."""

import math

import pytest

from aioapollo import ChangeType, ConfigValueError, NamespaceSnapshot, Source
from aioapollo._apollo.parsing import parse_content
from aioapollo._models import ConfigChange, diff_items


def snap(items: dict[str, str], fmt: str = "properties") -> NamespaceSnapshot:
    return NamespaceSnapshot(
        "application", fmt, items, release_key="r1", source=Source.REMOTE, fetched_at=0.0
    )


def test_typed_reads() -> None:
    s = snap(
        {"i": " 42 ", "f": "1.5", "b": "Yes", "l": "a, b,,c ", "j": '{"x": [1]}', "off": "OFF"}
    )
    assert s.get_int("i") == 42
    assert s.get_float("f") == 1.5
    assert s.get_bool("b") is True
    assert s.get_bool("off") is False
    assert s.get_list("l") == ["a", "b", "c"]
    assert s.get_list("l", delimiter=";") == ["a, b,,c"]
    assert s.get_json("j") == {"x": [1]}


def test_typed_reads_default_when_missing() -> None:
    s = snap({})
    assert s.get_int("x", 7) == 7
    assert s.get_float("x") is None
    assert s.get_bool("x", False) is False
    assert s.get_list("x", ["d"]) == ["d"]
    assert s.get_json("x", {"d": 1}) == {"d": 1}


@pytest.mark.parametrize(
    ("method", "value"),
    [
        ("get_int", "4.2"),
        ("get_float", "abc"),
        ("get_float", "nan"),
        ("get_bool", "maybe"),
        ("get_json", "{oops"),
    ],
)
def test_malformed_values_raise_without_echoing_value(method: str, value: str) -> None:
    s = snap({"k": value})
    with pytest.raises(ConfigValueError) as info:
        getattr(s, method)("k")
    assert info.value.key == "k"
    assert value not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_snapshot_is_read_only_and_repr_hides_values() -> None:
    s = snap({"password": "hunter2"})
    with pytest.raises(TypeError):
        s.items["password"] = "x"  # type: ignore[index]
    assert "hunter2" not in repr(s)
    assert s.content is None
    assert len(s) == 1 and "password" in s


def test_diff_items_kinds_and_repr_hides_values() -> None:
    changes = diff_items("ns", {"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "20", "d": "4"})
    assert {k: c.change_type for k, c in changes.items()} == {
        "b": ChangeType.MODIFIED,
        "d": ChangeType.ADDED,
        "c": ChangeType.DELETED,
    }
    assert changes["b"].old_value == "2" and changes["b"].new_value == "20"
    assert changes["c"].new_value is None
    text = repr(ConfigChange("ns", "pw", "secret-old", "secret-new", ChangeType.MODIFIED))
    assert "secret" not in text.replace("ns", "")


def test_parse_content_json_yaml_and_keep_previous_on_error() -> None:
    assert parse_content("json", {"content": '{"a": 1}'}, None) == ({"a": 1}, None)
    assert parse_content("yaml", {"content": "a: [1, 2]"}, None) == ({"a": [1, 2]}, None)
    data, error = parse_content("json", {"content": "{bad"}, {"a": 1})
    assert data == {"a": 1} and error is not None and "bad" not in error
    data, error = parse_content("yml", {"content": "  "}, {"old": True})
    assert data == {"old": True} and error is not None
    assert parse_content("txt", {"content": "x"}, None) == (None, None)


def test_yaml_is_never_evaluated() -> None:
    data, error = parse_content("yaml", {"content": "!!python/object/apply:os.system ['x']"}, 1)
    assert data == 1 and error is not None


@pytest.mark.parametrize("value", ["inf", "-inf", " Infinity ", "1e999", "-1e400"])
def test_float_infinity_is_rejected(value: str) -> None:
    # float() itself accepts every one of these (1e999 overflows to inf): the check is ours.
    assert math.isinf(float(value))
    with pytest.raises(ConfigValueError) as info:
        snap({"f": value}).get_float("f")
    assert info.value.expected == "finite float"


@pytest.mark.parametrize(
    ("value", "expected"), [("0", 0.0), ("-0.0", 0.0), ("1e308", 1e308), ("-2.5e-300", -2.5e-300)]
)
def test_float_extremes_that_are_finite_are_kept(value: str, expected: float) -> None:
    assert snap({"f": value}).get_float("f") == expected

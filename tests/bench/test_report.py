"""Every figure in README.md's "Benchmarks" section and docs/benchmarks.md comes from the newest
committed results file: regenerating the documents from it changes nothing."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report() -> Iterator[ModuleType]:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import report as module
    finally:
        sys.path.remove(str(ROOT / "bench"))
    yield module


def test_the_documents_match_the_newest_committed_results(report: ModuleType) -> None:
    results = report.newest_results()
    for doc, expected in report.rendered(results).items():
        actual = (ROOT / doc).read_text()
        assert actual == expected, (
            f"{doc} does not match {results.relative_to(ROOT)}: "
            f"run python bench/report.py {results.relative_to(ROOT)}"
        )


def test_the_committed_results_are_a_full_run(report: ModuleType) -> None:
    results = json.loads(report.newest_results().read_text())
    assert not results["quick"]
    assert not results["failed"]
    assert set(results["sections"]) == {
        "read_cost",
        "propagation",
        "follower",
        "startup",
        "scale",
        "idle",
    }


def test_no_figure_outside_the_generated_regions_of_the_benchmarks_page(
    report: ModuleType,
) -> None:
    """Outside its markers the page describes the method; measured numbers live inside."""
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    for region in report.DOCUMENTS["docs/benchmarks.md"]:
        text = report.replace_region(text, region, "")
    assert not _figures(text)


def _figures(text: str) -> list[str]:
    import re

    # A measured figure reads "12.3 ms", "1.45x", "0.94x", "35.5 ms": decimals with a unit.
    return re.findall(r"\b\d+\.\d+ ?(?:ms|x|s|%|MiB)\b", text)


def test_a_percentile_needs_enough_rounds(report: ModuleType) -> None:
    row = {
        "client": "aioapollo",
        "mode": "built in worker",
        "workers": 1,
        "note": "",
        "ms": [1.0] * 98 + [None, 500.0],
        "cpu_ms": [1.0] * 100,
        "configs": [1] * 100,
        "polls": [1] * 100,
        "held": [1] * 100,
        "other_cpus": [0.5] * 100,
        "warnings": 0,
    }
    full = report.Prop(row, 2)
    assert full.p99 == 500.0 and full.max == report.INF  # the missed round is ∞, not dropped
    assert [i for i, _, _ in full.slow] == [99, 100]
    short = report.Prop({**row, "ms": row["ms"][:99]}, 2)
    assert short.p99 is None and short.tail_name == "max"


def test_the_decryption_figures_in_docs_come_from_the_committed_results() -> None:
    """docs/secrets.md quotes bench/results/decrypt/2026-12-07.json, not hand-typed numbers."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    data = json.loads((root / "bench/results/decrypt/2026-12-07.json").read_text())["data"]
    doc = (root / "docs/secrets.md").read_text()
    reads = data["reads_ns"]
    jasypt, fernet, instant = data["releases"]
    rows = [
        f"| `get_nowait`, no decryptor | {reads['get_nowait, no decryptor']:.1f} ns |",
        "| `get_nowait` of an `ENC(...)` key, with a decryptor | "
        f"{reads['get_nowait of an ENC key, with a decryptor']:.1f} ns |",
        f"| {jasypt['release_ms']:.1f} ms ({jasypt['per_value_us'] / 1000:.2f} ms a value), "
        f"event loop stalled at most {jasypt['loop_max_stall_ms']:.1f} ms |",
        f"| the same with Fernet | {fernet['release_ms']:.1f} ms |",
        "| the same with an async decryptor that answers at once | "
        f"{instant['release_ms']:.1f} ms |",
        f"(jasypt) | {jasypt['one_changed_ms']:.2f} ms |",
    ]
    for row in rows:
        assert row in doc, row


def test_the_openfeature_read_costs_in_docs_come_from_the_committed_results() -> None:
    """docs/openfeature.md quotes bench/results/openfeature/2026-12-07.json, a full run."""
    results = json.loads((ROOT / "bench/results/openfeature/2026-12-07.json").read_text())
    assert results["section"] == "openfeature" and not results["quick"]
    data = results["data"]
    doc = (ROOT / "docs/openfeature.md").read_text()
    assert "bench/results/openfeature/2026-12-07.json" in doc
    assert f"best of {data['repeat']} rounds of\n{data['number']:,} calls" in doc
    reads = data["reads_ns"]
    base = reads["get_nowait (plain read)"]
    labels = {
        "get_nowait (plain read)": '`cfg.get("dark-mode")` (a plain read)',
        "provider.resolve_boolean_details": "`provider.resolve_boolean_details(...)`",
        "SDK get_boolean_value (plain mode)": "SDK `get_boolean_value` (plain mode)",
        "SDK get_integer_value (plain mode)": "SDK `get_integer_value` (plain mode)",
        "SDK get_boolean_value (flagd rule)": "SDK `get_boolean_value`, a flagd `ends_with` rule",
        "SDK get_string_value (fractional)": "SDK `get_string_value`, a fractional rollout",
    }
    assert set(labels) == set(reads)
    for name, label in labels.items():
        row = f"| {label} | {reads[name]:,.0f} | {reads[name] / base:,.0f} |"
        assert row in doc, row
    provider = reads["provider.resolve_boolean_details"]
    sdk = reads["SDK get_boolean_value (plain mode)"]
    rule = round((reads["SDK get_boolean_value (flagd rule)"] - sdk) / 1000)
    fractional = round((reads["SDK get_string_value (fractional)"] - sdk) / 1000)
    for figure in (
        f"(most of the {provider:,.0f} ns)",
        f"costs about {round((sdk - provider) / 1000)} µs",
        f"flagd's rules {rule}\N{EN DASH}{fractional} µs more",
    ):
        assert figure in doc, figure


def test_a_ratio_next_to_its_target_shows_which_side_it_is_on(report: ModuleType) -> None:
    assert report.vs_target(0.5024, 0.5) == "0.502x"  # missed: not "0.50x"
    assert report.vs_target(0.48, 0.5) == "0.48x"
    assert report.vs_target(0.5, 0.5) == "0.50x"
    assert report.vs_target(1.41, 1.0) == "1.41x"
    assert report.vs_target(None, 1.0) == "n/a"


def _facts(report: ModuleType, shared_ms: list[float], **shared: list[float]) -> object:
    """A results file with a shared row (built before fork) and one peer, 16 workers."""

    def row(client: str, mode: str, ms: list[float], **more: list[float]) -> dict[str, object]:
        return {
            "client": client,
            "mode": mode,
            "workers": 16,
            "note": "",
            "ms": ms,
            "cpu_ms": more.get("cpu_ms", [7.0] * len(ms)),
            "faults": more.get("faults", [1] * len(ms)),
            "configs": [1] * len(ms),
            "polls": [1] * len(ms),
            "held": [1] * len(ms),
            "other_cpus": more.get("other_cpus", [0.0] * len(ms)),
            "warnings": 0,
        }

    results = {
        "machine": {"nproc": 2},
        "sections": {
            "propagation": {
                "rows": [
                    row("aioapollo, share_poll=True", "built before fork", shared_ms, **shared),
                    row("apollo-client-python", "built in worker", [10.0] * 99 + [20.0]),
                ]
            }
        },
    }
    return report.Facts(results, "x.json")


def test_a_missed_sharing_target_is_explained_by_its_slowest_rounds(report: ModuleType) -> None:
    ms = [5.0] * 100
    ms[0], ms[40] = 14.0, 11.0  # the first change after start, and a round under other load
    faults, other = [1.0] * 100, [0.0] * 100
    faults[0], other[40] = 500.0, 1.0
    text = report.shared_cause_md(_facts(report, ms, faults=faults, other_cpus=other))
    assert "round 1 (14.0 ms, 500 page faults" in text
    assert "round 41 (11.0 ms, the rest of the machine busy on 1.00 CPUs)" in text
    assert "Round 1 was among the first 3 changes after the workers started" in text
    assert "Round 41 shared the machine with other load" in text
    assert "The p50 is 5.0 ms" in text


def test_a_met_sharing_target_needs_no_explanation(report: ModuleType) -> None:
    # The peer's p99 is 10.0 ms (the nearest rank of [10] * 99 + [20]); ours, 4.0, is under half.
    assert report.shared_cause_md(_facts(report, [4.0] * 99 + [5.0])) == ""


def test_the_sharing_explanation_names_every_round_its_p99_turns_on(report: ModuleType) -> None:
    # 200 rounds: the p99 (nearest rank, the 198th of 200) is the third slowest, not the second.
    ms = [5.0] * 200
    ms[10], ms[50], ms[150] = 30.0, 20.0, 12.0
    text = report.shared_cause_md(_facts(report, ms))
    assert "is set by the slowest three: round 11 (30.0 ms)" in text
    assert "round 151 (12.0 ms)" in text

"""Turn a results file of ``bench/run.py`` into tables and prose, and put them in the documents.

    python bench/report.py bench/results/2026-11-30.json          # rewrite the documents
    python bench/report.py bench/results/2026-11-30.json --check  # exit 1 if they differ
    python bench/report.py bench/results/2026-11-30.json --print  # the full report

Every figure in README.md's "Benchmarks" section and in docs/benchmarks.md lives between
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` markers and is written by this script
from one committed results file: tables, notes and the summary prose alike. Nothing here
measures; nothing there is typed by hand. This module imports only the standard library.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

FORMAT = 1
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCUMENTS = {
    "README.md": ("readme",),
    "docs/benchmarks.md": ("machine", "summary", "findings", "tables"),
}
#: A propagation round slower than this is listed, with the machine's other load during it.
SLOW_MS = 100.0
#: A percentile is quoted only over at least this many values per 1 % of tail: p99 needs 100.
P99_MIN = 100
OURS = "aioapollo"
SHARED = "aioapollo, share_poll=True"
BEFORE, IN_WORKER = "built before fork", "built in worker"
INF = math.inf

# ------------------------------------------------------------------------------ numbers


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values)


def num(value: float | None, digits: int = 1) -> str:
    """A number with ``digits`` decimals and thousands separators; a dash for None."""
    if value is None:
        return "—"
    if value == INF:
        return "∞"
    return f"{value:,.{digits}f}"


def times(value: float | None, digits: int = 2) -> str:
    """A ratio as ``1.23x``."""
    if value is None or value == INF or math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}x"


def vs_target(value: float | None, limit: float) -> str:
    """A ratio against a target's limit, with a third decimal where two would show the
    limit itself for a ratio on the wrong side of it (0.505x is not 0.50x)."""
    text = times(value)
    if value is not None and value != limit and text == times(limit):
        text = times(value, 3)
    return text


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0 or a == INF or b == INF:
        return None
    return a / b


def paired_ratio(values: Sequence[float], bases: Sequence[float]) -> float | None:
    """Median of value / base over runs taken side by side (ratio of medians if unpaired)."""
    if not values or not bases:
        return None
    if len(values) == len(bases):
        return median([v / b for v, b in zip(values, bases, strict=True) if b > 0])
    return ratio(median(values), median(bases))


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines.extend("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)
    return "\n".join(lines)


def bullets(notes: Iterable[str]) -> str:
    return "\n".join(f"- {note}" for note in notes)


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else (words or word + 's')}"


# ------------------------------------------------------------------------------ propagation


class Prop:
    """One propagation row (client, mode, workers) and what its rounds add up to."""

    def __init__(self, row: dict[str, Any], nproc: int) -> None:
        self.row = row
        self.client: str = row["client"]
        self.mode: str = row["mode"]
        self.workers: int = row["workers"]
        self.note: str = row["note"]
        ms: list[float | None] = row["ms"]
        self.published = len(ms)
        self.values = [INF if v is None else v for v in ms]
        self.missed = sum(1 for v in ms if v is None)
        self.reached = self.published - self.missed
        self.p50 = median(self.values) if self.values else None
        self.p99 = pct(self.values, 99) if self.published >= P99_MIN else None
        self.max = max(self.values) if self.values else None
        self.other: list[float] = row["other_cpus"]
        self.slow = [
            (i + 1, v, self.other[i] if i < len(self.other) else None)
            for i, v in enumerate(self.values)
            if v > SLOW_MS
        ]
        self.cpu = mean(row["cpu_ms"]) if self.reached and row["cpu_ms"] else None
        self.configs = mean(row["configs"]) if row["configs"] else None
        self.polls = mean(row["polls"]) if row["polls"] else None
        self.held = median(row["held"]) if row["held"] else None
        self.warnings: int = row["warnings"]
        self.nproc = nproc

    @property
    def ours(self) -> bool:
        return self.client.startswith(OURS)

    @property
    def tail(self) -> float | None:
        """The p99, or the max when there are too few rounds for a p99."""
        return self.p99 if self.p99 is not None else self.max

    @property
    def tail_name(self) -> str:
        return "p99" if self.p99 is not None else "max"

    def rounds(self) -> str:
        return f"{self.reached}/{self.published}"


class Facts:
    """Everything the prose and the tables say, computed once from a results file."""

    def __init__(self, results: dict[str, Any], name: str = "") -> None:
        self.results = results
        self.name = name
        self.sections: dict[str, Any] = results["sections"]
        self.nproc = int(results["machine"]["nproc"])
        prop = self.sections.get("propagation", {"rows": [], "failover": [], "params": {}})
        self.prop = [Prop(row, self.nproc) for row in prop["rows"]]
        self.prop_params: dict[str, Any] = prop.get("params", {})
        self.failover: list[dict[str, Any]] = prop.get("failover", [])
        self.largest = max((p.workers for p in self.prop), default=0)

    def row(self, client: str, mode: str, workers: int) -> Prop | None:
        for p in self.prop:
            if (p.client, p.mode, p.workers) == (client, mode, workers):
                return p
        return None

    def best_peer(self, workers: int) -> Prop | None:
        """The peer with the lowest tail in its easiest mode (built in worker), misses = ∞."""
        peers = [
            p
            for p in self.prop
            if not p.ours and p.mode == IN_WORKER and p.workers == workers and p.published
        ]
        return min(peers, key=lambda p: p.tail if p.tail is not None else INF, default=None)

    def vs_best(self, p: Prop) -> float | None:
        best = self.best_peer(p.workers)
        if best is None or p.tail_name != best.tail_name:
            return None
        return ratio(p.tail, best.tail)

    # -------------------------------------------------------------- read cost

    def reads(self) -> dict[str, dict[str, Any]]:
        data = self.sections.get("read_cost")
        if not data:
            return {}
        found: dict[str, dict[str, Any]] = {}
        nets = {v["name"]: v["net_ns"] for v in data["variants"]}
        dict_get = median(nets["bare `dict.get`"]) if "bare `dict.get`" in nets else None
        for v in data["variants"]:
            net = v["net_ns"]
            base = v["baseline"]
            pairs = [a / b for a, b in zip(net, nets[base], strict=True) if b > 0] if base else []
            found[v["name"]] = {
                "median": median(net),
                "p99": pct(net, 99) if len(net) >= P99_MIN else None,
                "max": max(net),
                "x_dict": ratio(median(net), dict_get),
                "baseline": base,
                "ratio": median(pairs) if pairs else None,
                "target": v["target"],
            }
        return found


# ------------------------------------------------------------------------------ tables


def read_cost_md(data: dict[str, Any], facts: Facts | None = None) -> str:
    facts = facts or Facts({"sections": {"read_cost": data}, "machine": {"nproc": "1"}})
    reads = facts.reads()
    params = data["params"]
    rows = []
    for name, r in reads.items():
        verdict = ""
        if r["target"] is not None:
            met = r["ratio"] is not None and r["ratio"] <= r["target"]
            verdict = f"≤ {r['target']}x: {'met' if met else '**missed**'}"
        rows.append(
            [
                name,
                num(r["median"]),
                num(r["p99"]),
                times(r["x_dict"], 1),
                (r["baseline"] or "—").replace(" (baseline)", ""),
                times(r["ratio"]) if r["baseline"] else "—",
                verdict,
            ]
        )
    rows += [[m["name"], "—", "—", "—", "—", "—", m["why"]] for m in data["missing"]]
    shares = ", ".join(
        f"`{name}` {share:.0%}" for name, share in data["profile"]["own_time_shares"]
    )
    notes = [
        f"{params['batches']} batches x {params['calls']:,} calls per getter, interleaved (who "
        f"goes first rotates); loop cost ({params['loop_ns']:.1f} ns/iteration) subtracted. "
        f"p99 is over the {params['batches']} batch means. A ratio is the median over batches "
        "of (getter / its baseline in the same batch).",
        "The fork check is included: reads test the client's `_live` flag, which the at-fork "
        "hook clears in a child; no per-read `os.getpid()`.",
        f"Where `await get_int` spends its time (cProfile, {data['profile']['calls']:,} calls, "
        f"share of own time): {shares}. A typed read is `get_int` → `namespace()` → "
        "`snapshot()` → `NamespaceSnapshot.get_int` → `_raw` → a `MappingProxyType` lookup: "
        "five Python calls where the minimal typed baseline makes one.",
    ]
    columns = ["getter", "median ns", "p99 ns", "x dict.get", "baseline", "ratio", "target"]
    return _section("Read cost (ns per call, net of loop overhead)", table(columns, rows), notes)


def propagation_md(data: dict[str, Any], facts: Facts | None = None) -> str:
    facts = facts or Facts({"sections": {"propagation": data}, "machine": {"nproc": "1"}})
    params = data["params"]
    rows: list[list[Any]] = [
        [m["client"], "both", "—", "—", "—", "—", "—", "—", "—", "—", "—", "—", "—", m["why"]]
        for m in data["missing"]
    ]
    for p in facts.prop:
        best = facts.best_peer(p.workers)
        rows.append(
            [
                p.client,
                p.mode,
                p.workers,
                p.rounds(),
                num(p.p50),
                num(p.p99),
                num(p.max),
                len(p.slow),
                "baseline" if best is p else times(facts.vs_best(p)),
                num(p.cpu, 2),
                f"{num(p.configs, 1)} + {num(p.polls, 1)}" if p.configs is not None else "—",
                num(p.held, 0),
                p.warnings,
                p.note,
            ]
        )
    columns = [
        "client",
        "mode",
        "workers",
        "rounds reached",
        "p50 ms",
        "p99 ms",
        "max ms",
        f"rounds > {SLOW_MS:.0f} ms",
        "p99 / best peer",
        "host CPU ms / update",
        "requests / publish (fetch + poll)",
        "polls held",
        "client warnings",
        "note",
    ]
    notes = [
        "Slowest worker per round. `rounds reached` = rounds that reached every worker / "
        "rounds published. A missed round counts as slower than any other in p50, p99 and "
        f"max (∞). p99 is quoted only over {P99_MIN} rounds or more (nearest rank), else `—`: "
        "then only the max stands.",
        "Ratio: this p99 over the best peer's p99 in its easiest mode (built in worker) at the "
        "same worker count, both from this run (the peer's missed rounds count as ∞).",
        f"All clients and modes of one worker count run side by side and take turns round by "
        f"round (who goes first rotates), {params['rounds']} rounds each. A round publishes "
        "once every poll of that client is held, waits at most "
        f"{params['round_timeout_s']:g} s for every worker, then waits until every poll is "
        f"held again plus {params['settle_s'] * 1000:.0f} ms before the next client's turn.",
        "Host CPU ms / update: CPU time of all the row's workers (every thread, `/proc`) from "
        "the publish to the end of the round's settle, averaged over the rounds that reached "
        "every worker. A parent that polls too (papollo, `SyncApolloClient` and "
        "apollo-client-python built before fork) is not included.",
        "Requests / publish: what the row's test server logged per round (the parent's own "
        "poll included where it polls), `/configs` fetches + `/notifications/v2` polls. "
        "Polls held: long polls held between rounds (median).",
        "Client warnings: warnings the workers' clients logged during the rounds (a failed "
        "poll, a failed fetch).",
        "The harness (the test servers and their request logs, in one process) collects its "
        "garbage between turns, every "
        f"{params.get('harness_gc_every', 1)} turns of every row, never during a round: an "
        "automatic full collection of its heap stalled the test servers in the middle of "
        "rounds, which then looked slow for whichever client's turn it was.",
        "Every client runs with its defaults, except apollo-client-python's pause after each "
        f"poll reply (`_cycle_time`, 2 s), set to {params['peer_poll_pause_s']:g} s, "
        "aioapollo's `poll_min_interval` default: the pause never enters a round (a round "
        "starts when every poll is held), it decides how many rounds fit in the time. It does "
        "put the peer's next poll, and the test server's work on it, after its listeners, "
        "where aioapollo's next poll goes out right after them, while other workers still "
        "wait for the CPU.",
    ]
    parts = [
        _section(
            "Propagation: publish -> listener fired in the slowest worker (ms)",
            table(columns, rows),
            notes,
        )
    ]
    if facts.failover:
        parts.append(failover_md(facts))
    return "\n\n".join(parts)


def failover_md(facts: Facts) -> str:
    rows = []
    timeout = facts.prop_params.get("failover_timeout_s", 0)
    for f in facts.failover:
        values = [INF if v is None else v for v in f["ms"]]
        rows.append(
            [
                f["client"],
                f["mode"],
                f["workers"],
                f"{sum(1 for v in f['ms'] if v is not None)}/{len(f['ms'])}",
                num(median(values)) if values else "—",
                num(max(values)) if values else "—",
                f"{f['after_publish_reached']}/{f['after_publish_workers']}",
                f["note"],
            ]
        )
    columns = [
        "client",
        "mode",
        "workers",
        "kills with a new poll held",
        "p50 ms",
        "max ms",
        "next publish reached",
        "note",
    ]
    notes = [
        "The leader (the worker whose `on_role` hook said `leader`) is killed with SIGKILL; "
        "the figure is the time from the kill to the arrival of the first long poll that the "
        "test server then holds (still unanswered 20 ms later), from its request log. A "
        "replacement worker is forked after each kill (it joins as a follower), as a "
        f"preforking server does. A kill with no new poll held within {timeout:g} s counts "
        "as ∞. Too few kills for a p99: p50 and max.",
        "Next publish reached: one publish after the last kill, workers whose listener fired "
        "(survivors and replacements).",
    ]
    return _section(
        "Failover: leader SIGKILL -> a new long poll held (ms)", table(columns, rows), notes
    )


def sharing_md(facts: Facts) -> str:
    w = facts.largest
    rows = []
    for client in (SHARED, OURS):
        for mode in (BEFORE, IN_WORKER):
            p = facts.row(client, mode, w)
            if p is None:
                continue
            rows.append(
                [
                    client,
                    mode,
                    w,
                    num(p.configs, 2),
                    num(p.polls, 2),
                    num(p.held, 0),
                    num(p.cpu, 2),
                    num(p.p99),
                    times(facts.vs_best(p)),
                ]
            )
    columns = [
        "client",
        "mode",
        "workers",
        "/configs per publish",
        "/notifications/v2 per publish",
        "polls held",
        "host CPU ms / update",
        "p99 ms",
        "p99 / best peer",
    ]
    notes = [
        "From the propagation rounds above (same run, same turns). Per publish: the requests "
        "the row's test server logged per round; every poller has one poll answered and sends "
        "one fetch and one new poll, so the new polls stand for the answered ones.",
        "Host CPU ms / update: the CPU time of every worker of the host, summed (`/proc`).",
    ]
    return _section("One long poll per host: per publish and host", table(columns, rows), notes)


def startup_md(data: dict[str, Any]) -> str:
    params = data["params"]
    floors = {r["size"]: r["ms"] for r in data["rows"] if r["floor"]}
    one = floors.get(min(floors)) if floors else None
    rows = []
    for r in data["rows"]:
        ms = r["ms"]
        if not ms:
            rows.append([_floor_label(r), r["size"], "—", "—", "—", "—", r["note"]])
            continue
        rows.append(
            [
                _floor_label(r),
                r["size"],
                num(median(ms), 2),
                num(max(ms), 2),
                times(paired_ratio(ms, floors.get(r["size"], []))),
                times(ratio(median(ms), median(one) if one else None)),
                r["note"],
            ]
        )
    rows += [[m["label"], "—", "—", "—", "—", "—", m["why"]] for m in data["missing"]]
    columns = [
        "client",
        "namespaces",
        "median ms",
        "max ms",
        "/ N concurrent GETs",
        "/ one round trip",
        "note",
    ]
    notes = [
        f"{params['reps']} starts per row. The floor (a new aiohttp session, N concurrent "
        "GET /configs and json.loads of each; the server shares this process) and the clients "
        "take turns start by start (who goes first rotates); `/ N concurrent GETs` is the "
        "median over starts of (start / the floor's start of the same turn). One round trip "
        "= the N=1 floor's median. Too few starts for a p99: median and max.",
        "Every start gets a fresh, empty cache directory and `HOME` (where peers cache): none "
        "finds what an earlier one wrote. aioapollo's `start()` does not wait for its disk-"
        "cache writes (a background writer does them; `aclose()`, not timed, waits for them); "
        "the `cache_dir=None` rows have no writer at all.",
        "Peers that load namespaces one at a time (papollo `Apollo`, apollo-client-python, "
        "apollocfg) grow with N; apollo-client-python's constructor also probes 8.8.8.8 for "
        "its IP and writes a cache file per namespace.",
    ]
    parts = [
        _section("Start-up: start to every namespace loaded (ms)", table(columns, rows), notes)
    ]
    if data.get("wide"):
        parts.append(wide_md(data))
    return "\n\n".join(parts)


def _floor_label(row: dict[str, Any]) -> str:
    return f"{row['size']} concurrent GETs (baseline)" if row["floor"] else row["label"]


def wide_md(data: dict[str, Any]) -> str:
    params = data["params"]
    rows = [
        [
            w["label"],
            w["size"],
            num(w.get("start_ms")),
            w.get("configs", "—"),
            w.get("polls", "—"),
            w.get("held", "—"),
            w["note"],
        ]
        for w in data["wide"]
    ]
    lines = ", ".join(
        f"{size:,} bytes for {int(n)} namespaces" for n, size in data["poll_line_bytes"].items()
    )
    notes = [
        f"Requests counted from start to {params['wide_settle_s']:g} s after the first long "
        f"poll was held ({params['wide_wait_s']:g} s at most), against a fresh server per "
        "row. One held poll covering every namespace is the goal; papollo aborts and re-sends "
        "its poll each time a namespace is first read.",
        "Every client fetches each namespace twice while starting: its first poll carries "
        "notificationId -1, the server answers at once with the current ids, and the client "
        "re-checks each namespace (304s). The Java client does the same.",
        f"The request line of one long poll for all of them is {lines} (names `ns001`...). "
        "The test server (aiohttp) rejects request lines over 8,190 bytes with a 400 before "
        "logging them, so a client whose poll is too long shows 0 polls and 0 held: it never "
        "gets a long poll through. aioapollo splits its poll into groups of at most 6 KiB.",
    ]
    return _section(
        "100 and 200 namespaces in one client (requests in the server log)",
        table(
            [
                "client",
                "namespaces",
                "start ms",
                "/configs requests",
                "/notifications/v2 requests",
                "long polls it holds",
                "note",
            ],
            rows,
        ),
        notes,
    )


def scale_md(data: dict[str, Any]) -> str:
    params = data["params"]
    rows = []
    floor = {r["size"]: r for r in data["rows"] if r["floor"]}
    for r in data["rows"]:
        base = floor.get(r["size"])
        update = r["update_ms"]
        mem = r["mem_bytes"]
        rows.append(
            [
                r["label"],
                f"{r['size']:,}",
                num(median(r["load_ms"])) if r["load_ms"] else "—",
                "1.00x"
                if r["floor"]
                else times(paired_ratio(r["load_ms"], base["load_ms"]))
                if base
                else "n/a",
                num(median(update)) if update else "—",
                num(mem / 2**20, 2) if mem is not None else "—",
                times(ratio(mem, base["mem_bytes"])) if base and mem is not None else "—",
            ]
        )
    rows += [[m["label"], "—", m["why"], "", "", "", ""] for m in data["missing"]]
    reps = " / ".join(str(v) for v in params["reps"].values())
    sizes = " / ".join(f"{int(k) // 1000}k" for k in params["reps"])
    notes = [
        "Keys look like `key.000123` = `value-123-xxxxxxxxxxxxxxxx`. Loads and updates per "
        f"row: {reps} for {sizes} keys, medians. The baseline and the clients take turns "
        "load by load (who goes first rotates); `load / baseline` is the median over turns "
        "of (load / the baseline's load of the same turn). Every load gets a fresh, empty "
        "cache directory and `HOME`, so aioapollo writes a new cache file each time (the "
        "`cache_dir=None` row has no writer).",
        "update ms starts when the server's publish returned and ends in the listener. The "
        "clients with a change listener run side by side, each on its own copy of the "
        "namespace, and take turns publish by publish. `—` = not measured (clients whose "
        "change path is the same thread-and-urllib fetch as their load).",
        "Retained memory: `tracemalloc` difference before building and after loading one "
        "client (gc collected), measured against a test server in another process, after a "
        "warm-up build of each client; for aioapollo with a cache, once its cache file is "
        "written (`start()` does not wait for it, and a write in flight holds an encoded copy).",
    ]
    columns = [
        "client",
        "keys",
        "load ms",
        "load / baseline",
        "update ms",
        "retained MiB",
        "memory / baseline",
    ]
    return _section(
        "Scale: one namespace of N keys (load and update in ms, memory in MiB)",
        table(columns, rows),
        notes,
    )


def idle_md(data: dict[str, Any]) -> str:
    params = data["params"]
    rows = []
    for r in data["rows"]:
        if "requests" not in r:
            rows.append([r["label"], "—", "—", "—", r["note"]])
            continue
        minutes = r["window_s"] / 60
        rows.append(
            [
                r["label"],
                num(r["requests"] / minutes, 2),
                f"{r['polls']} / {r['requests'] - r['polls']}",
                num(r["cpu_s"] / r["window_s"] * 3600, 3),
                r["note"],
            ]
        )
    notes = [
        f"Window {params['window_s']:g} s after a {params['settle_s']:g} s settle, all clients "
        "at once, each with its own server; figures extrapolated linearly. CPU: the worker's "
        "CPU time, every thread, from `/proc` (nanoseconds where the kernel keeps schedstats).",
        "Not in a window this short: aioapollo's safety refresh (every 300 s: one /configs "
        "per namespace, +0.2 requests/min), apollocfg's (300 s), apollo-client-python's "
        "scheduled refetch (600 s).",
    ]
    columns = [
        "client",
        "requests / min",
        "polls / other requests in window",
        "CPU s / hour",
        "note",
    ]
    return _section(
        "Idle cost of one client (one namespace, 60 s server hold)", table(columns, rows), notes
    )


def follower_md(data: dict[str, Any]) -> str:
    params = data["params"]
    follower = data["follower_cpu_ms"]
    started = data["follower_rss_kib_started"]
    after = data["follower_rss_kib_after"]
    base = data["baseline_rss_kib"]
    rows = [
        [
            "follower CPU per applied release (mean / largest)",
            f"{num(mean(follower), 3)} / {num(max(follower), 3)} ms",
            "≤ 0.25 ms",
        ],
        [
            "leader fan-out per follower per release",
            f"{num(data['fanout_per_follower_ms'], 3)} ms",
            "reported",
        ],
        [
            "leader CPU per release: alone / with the followers",
            f"{num(data['leader_alone_cpu_ms'], 2)} / {num(data['leader_shared_cpu_ms'], 2)} ms",
            "",
        ],
        [
            "follower RSS over `import asyncio` (started / after the rounds, largest)",
            f"{num((max(started) - base) / 1024, 1)} / {num((max(after) - base) / 1024, 1)} MiB",
            "≤ 8 MiB",
        ],
        [
            "followers that imported aiohttp (at start / after the rounds)",
            f"{data['followers_with_aiohttp_at_start']} / {data['followers_with_aiohttp_after']}",
            "0 / 0",
        ],
    ]
    notes = [
        f"One leader and {params['followers']} followers, each a fresh interpreter "
        "(`share_poll=True`); "
        f"{params['rounds']} releases of {params['keys']} keys, each heard by every process "
        "before the next. CPU: each process's CPU time (every thread, `/proc`) over the rounds, "
        "minus its CPU over an idle window as long (heartbeats), per release; fan-out: the "
        "leader's CPU per release with the followers minus alone, per follower.",
        f'RSS: `VmRSS` as each process reads it; the baseline, a fresh `python -c "import '
        f'asyncio"`, is {num(base / 1024, 1)} MiB.',
    ]
    return _section(
        "A process that only follows (share_poll=True)",
        table(["measure", "figure", "target"], rows),
        notes,
    )


def _section(title: str, body: str, notes: Sequence[str]) -> str:
    return f"### {title}\n\n{body}\n\n{bullets(notes)}"


def section_markdown(section: str, data: dict[str, Any]) -> str:
    """One section's tables (what a section script prints when run on its own)."""
    render: dict[str, Callable[[dict[str, Any]], str]] = {
        "read_cost": read_cost_md,
        "propagation": propagation_md,
        "startup": startup_md,
        "scale": scale_md,
        "idle": idle_md,
        "follower": follower_md,
    }
    return render[section](data)


def tables_md(facts: Facts) -> str:
    s = facts.sections
    parts = []
    if "read_cost" in s:
        parts.append(read_cost_md(s["read_cost"], facts))
    if "propagation" in s:
        parts.append(propagation_md(s["propagation"], facts))
        parts.append(sharing_md(facts))
    if "follower" in s:
        parts.append(follower_md(s["follower"]))
    if "startup" in s:
        parts.append(startup_md(s["startup"]))
    if "scale" in s:
        parts.append(scale_md(s["scale"]))
    if "idle" in s:
        parts.append(idle_md(s["idle"]))
    return "\n\n".join(parts)


def machine_md(facts: Facts) -> str:
    r = facts.results
    m = r["machine"]
    found = [f"{d} {v}" for d, v in r["versions"].items() if v]
    absent = [d for d, v in r["versions"].items() if not v]
    lines = [
        f"Command: `{r['command']}` ({r['seconds']:,} s), {r['started_utc']} UTC, results file "
        f"`{facts.name}`."
        if facts.name
        else f"Command: `{r['command']}` ({r['seconds']:,} s).",
        f"Machine: {m['nproc']} CPUs (`nproc`), {m['cpu']}, Python {m['python']}, {m['platform']}.",
        f"Versions: {', '.join(found)}"
        + (f"; not installed: {', '.join(absent)}." if absent else "."),
    ]
    if r["failed"]:
        lines.append(f"Sections that failed: {', '.join(r['failed'])}.")
    return "\n".join(lines)


def full_markdown(results: dict[str, Any], name: str = "") -> str:
    facts = Facts(results, name)
    parts = ["## Benchmarks", machine_md(facts), summary_md(facts), findings_md(facts)]
    return fill("\n\n".join([*parts, tables_md(facts)])) + "\n"


# ------------------------------------------------------------------------------ prose


def _target(p: Prop | None, facts: Facts, limit: float) -> tuple[str, float | None, Prop | None]:
    """``met`` / ``**missed**`` for ``p``'s p99 ≤ limit x the best peer's, every round in."""
    if p is None:
        return "not measured", None, None
    best = facts.best_peer(p.workers)
    r = facts.vs_best(p)
    if r is None or best is None:
        return "not measured", None, best
    return ("met" if r <= limit and not p.missed else "**missed**"), r, best


def summary_rows(facts: Facts, short: bool) -> list[list[str]]:
    rows: list[list[str]] = []
    s = facts.sections
    if facts.reads():
        rows += read_summary(facts, short)
    if facts.prop:
        rows += propagation_summary(facts, short)
    if "startup" in s:
        rows.append(startup_summary(s["startup"]))
        if s["startup"].get("wide"):
            rows.append(wide_summary(s["startup"]))
    if "scale" in s and not short:
        rows.append(scale_summary(s["scale"]))
    if "follower" in s:
        rows.append(follower_summary(s["follower"]))
    if "idle" in s:
        rows.append(idle_summary(s["idle"]))
    return rows


def follower_summary(data: dict[str, Any]) -> list[str]:
    cpu = max(data["follower_cpu_ms"])
    rss = (max(data["follower_rss_kib_after"]) - data["baseline_rss_kib"]) / 1024
    cpu_verdict = "met" if cpu <= 0.25 else "**missed**"
    rss_verdict = "met" if rss <= 8 else "**missed**"
    return [
        "a process that only follows (`share_poll=True`)",
        f"{num(cpu, 3)} ms CPU per applied release (target ≤ 0.25 ms: {cpu_verdict}); "
        f"{num(rss, 1)} MiB RSS over `import asyncio` (target ≤ 8 MiB: {rss_verdict}); "
        f"the leader's fan-out: {num(data['fanout_per_follower_ms'], 3)} ms per follower "
        "per release",
        "—",
    ]


READS = {
    "aioapollo `get_nowait`": "`get_nowait`",
    "aioapollo `await get`": "`await get`",
    "aioapollo `SyncApolloClient.get`": "`SyncApolloClient.get`",
}


def read_summary(facts: Facts, short: bool) -> list[list[str]]:
    reads = facts.reads()
    ours = [name for name in READS if name in reads]
    met = all(
        reads[n]["ratio"] is not None and reads[n]["ratio"] <= reads[n]["target"] for n in ours
    )
    peers = [
        f"{name.split(' ')[0]} {times(r['ratio'], 1)}"
        for name, r in reads.items()
        if not name.startswith(("aioapollo", "bare", "minimal")) and "await" not in name
    ]
    rows = [
        [
            "read on the request path vs a minimal method doing `self._d[ns].get(k, default)` "
            "(target ≤ 1.3x)",
            ", ".join(f"{READS[n]} {times(reads[n]['ratio'])}" for n in ours)
            + f": **{'met' if met else 'missed'}**",
            ", ".join(peers) or "—",
        ]
    ]
    typed = reads.get("aioapollo `await get_int`")
    if typed and not short:
        rows.append(
            [
                "typed read (`await get_int`)",
                f"{times(typed['ratio'])} a minimal typed `async def`",
                "(no peer has typed getters)",
            ]
        )
    return rows


def propagation_summary(facts: Facts, short: bool) -> list[list[str]]:
    rows: list[list[str]] = []
    w = facts.largest
    p = facts.row(OURS, BEFORE, w)
    verdict, r, best = _target(p, facts, 1.0)
    if p is not None and best is not None:
        text = (
            f"{p.tail_name} {num(p.tail)} ms vs {num(best.tail)} ms ({best.client}): "
            f"{verdict}, {vs_target(r, 1.0)}; {p.rounds()} rounds reached all {w} workers, "
            f"{plural(len(p.slow), 'round')} over {SLOW_MS:.0f} ms"
        )
        extra = []
        inw = facts.row(OURS, IN_WORKER, w)
        if inw is not None:
            extra.append(f"built in each worker: {times(facts.vs_best(inw))}")
        nocache = facts.row("aioapollo, cache_dir=None", BEFORE, w)
        if nocache is not None and not short:
            extra.append(f"`cache_dir=None`: {times(facts.vs_best(nocache))}")
        if extra:
            text += f" ({'; '.join(extra)})"
        peers = []
        for client in ("apollo-client-python", "papollo"):
            q = facts.row(client, BEFORE, w)
            if q is None:
                continue
            if q.reached == 0:
                peers.append(f"{client} built before fork **never updates**")
            else:
                peers.append(
                    f"{client} built before fork: {q.tail_name} {num(q.tail)} ms "
                    f"({times(facts.vs_best(q))})"
                )
        rows.append(
            [
                f"publish → listener, {w} forked workers, client built before fork, "
                f"{p.tail_name} of the slowest worker (target: ≤ the best peer built in each "
                "worker)",
                text,
                "; ".join(peers) or "—",
            ]
        )
    sh = facts.row(SHARED, BEFORE, w)
    verdict, r, best = _target(sh, facts, 0.5)
    if sh is not None and best is not None and p is not None:
        rows.append(
            [
                f"`share_poll=True`, {w} workers built before fork (target: {sh.tail_name} ≤ "
                "0.5x the best peer built in each worker)",
                f"{sh.tail_name} {num(sh.tail)} ms vs {num(best.tail)} ms: {verdict}, "
                f"{vs_target(r, 0.5)}. Per publish: {num(_requests(sh), 1)} requests against "
                f"{num(_requests(p), 1)} unshared, {num(sh.held, 0)} poll held against "
                f"{num(p.held, 0)}; host CPU per update {num(sh.cpu, 1)} ms against "
                f"{num(p.cpu, 1)} ms ({times(ratio(sh.cpu, p.cpu))})",
                "(no peer shares a poll)",
            ]
        )
    for f in facts.failover:
        values = [INF if v is None else v for v in f["ms"]]
        rows.append(
            [
                "failover: leader SIGKILL → a new long poll held",
                f"p50 {num(median(values))} ms, max {num(max(values))} ms over "
                f"{plural(len(values), 'kill')}; the next publish reached "
                f"{f['after_publish_reached']}/{f['after_publish_workers']} workers",
                "—",
            ]
        )
    return rows


def _requests(p: Prop) -> float | None:
    if p.configs is None or p.polls is None:
        return None
    return p.configs + p.polls


def wide_summary(data: dict[str, Any]) -> list[str]:
    sizes = data["params"]["wide"]

    def held(prefix: str) -> str:
        found = {w["size"]: w.get("held") for w in data["wide"] if w["label"].startswith(prefix)}
        return " / ".join(str(found.get(n, "—")) for n in sizes)

    return [
        f"{' / '.join(str(n) for n in sizes)} namespaces in one client",
        f"{held('aioapollo')} long polls held (no request line over 6 KiB)",
        f"papollo `Apollo`: {held('papollo `Apollo`')} (its request line for {max(sizes)} is "
        "longer than the server takes)",
    ]


def startup_summary(data: dict[str, Any]) -> list[str]:
    n = max(data["params"]["sizes"])
    floors = {r["size"]: r["ms"] for r in data["rows"] if r["floor"]}
    found = {(r["label"], r["size"]): r["ms"] for r in data["rows"] if not r["floor"]}

    def r_(label: str) -> str:
        ms = found.get((label, n))
        return times(paired_ratio(ms, floors[n])) if ms else "n/a"

    return [
        f"start-up, {n} namespaces, vs {n} concurrent GETs",
        f"{r_('aioapollo `await start()`')} ({r_('aioapollo `await start()`, cache_dir=None')} "
        "with `cache_dir=None`)",
        f"papollo `Apollo` {r_('papollo `Apollo` (first read of each)')}, "
        f"apollo-client-python {r_('apollo-client-python (constructor)')}",
    ]


def scale_summary(data: dict[str, Any]) -> list[str]:
    n = max(data["params"]["sizes"])
    rows = {r["label"]: r for r in data["rows"] if r["size"] == n}
    floor = next(r for r in rows.values() if r["floor"])
    ours = rows.get("aioapollo")
    bare = rows.get("aioapollo, cache_dir=None")
    pap = rows.get("papollo `Apollo`")
    if ours is None:
        return [f"{n:,}-key namespace", "not measured", "—"]

    def load(row: dict[str, Any]) -> str:
        return times(paired_ratio(row["load_ms"], floor["load_ms"]))

    def update(row: dict[str, Any] | None) -> float | None:
        return median(row["update_ms"]) if row and row["update_ms"] else None

    text = (
        f"retained memory {times(ratio(ours['mem_bytes'], floor['mem_bytes']))} the parsed "
        f"dict; load {load(ours)} fetch + parse"
        + (f" ({load(bare)} with `cache_dir=None`)" if bare else "")
        + f"; update {num(update(ours))} ms"
    )
    if update(pap):
        text += f" ({times(ratio(update(ours), update(pap)))} papollo's)"
    peer = "—"
    if pap:
        peer = (
            f"papollo: memory {times(ratio(pap['mem_bytes'], floor['mem_bytes']))}, load "
            f"{load(pap)}, update {num(update(pap))} ms"
        )
    return [f"{n:,}-key namespace", text, peer]


def idle_summary(data: dict[str, Any]) -> list[str]:
    rows = {r["label"]: r for r in data["rows"] if "requests" in r}

    def per(r: dict[str, Any]) -> str:
        return (
            f"{num(r['requests'] / (r['window_s'] / 60), 2)} requests/min, "
            f"{num(r['cpu_s'] / r['window_s'] * 3600, 3)} CPU s/hour"
        )

    ours = rows.get("aioapollo")
    peers = [f"{k}: {per(r)}" for k, r in rows.items() if not k.startswith("aioapollo")]
    return [
        "idle client (one namespace)",
        per(ours) if ours else "not measured",
        "; ".join(peers) or "—",
    ]


def summary_md(facts: Facts, short: bool = False) -> str:
    return table(["question", "aioapollo", "peers (same run)"], summary_rows(facts, short))


def cause_md(facts: Facts) -> str:
    """Why the propagation target is met or missed, from the CPU each update costs."""
    w = facts.largest
    p = facts.row(OURS, BEFORE, w)
    best = facts.best_peer(w)
    if p is None or best is None or p.cpu is None or best.cpu is None:
        return ""
    text = (
        f"On {facts.nproc} CPUs, the {w} workers woken by one publish queue for the CPU, so the "
        f"slowest worker's latency follows the CPU the whole host spends on an update: "
        f"{num(p.cpu, 1)} ms for aioapollo built before fork ({num(p.cpu / w, 2)} ms per worker) "
        f"against {num(best.cpu, 1)} ms for {best.client} ({num(best.cpu / w, 2)} ms per "
        f"worker), that is {num(p.cpu / facts.nproc, 1)} against {num(best.cpu / facts.nproc, 1)} "
        f"ms of wall time spread over {facts.nproc} CPUs; their p50s are {num(p.p50)} and "
        f"{num(best.p50)} ms."
    )
    if p.cpu <= best.cpu * 1.1 and p.p50 > best.p50:
        text += (
            f" With about the same CPU ({times(ratio(p.cpu, best.cpu))}), what differs is when it "
            "is spent: each aioapollo worker sends its next long poll right after its listeners, "
            "as Apollo's protocol asks (poll again at once), so that request's CPU and the test "
            "server's work on it fall inside the round while other workers still wait for the "
            f"CPU; {best.client} pauses before its next poll (see the notes below)."
        )
    return text


#: Rounds counted from the first after the workers started that run code paths for the
#: first time in each process (copy-on-write faults, the interpreter's specialisation).
FIRST_ROUNDS = 3


def shared_cause_md(facts: Facts) -> str:
    """What sets the ``share_poll=True`` row's p99: its slowest rounds, each with what the
    results say happened during it (``""`` when the target is met)."""
    w = facts.largest
    sh, best = facts.row(SHARED, BEFORE, w), facts.best_peer(w)
    if sh is None or best is None or sh.p99 is None or best.tail is None:
        return ""
    if sh.p99 <= 0.5 * best.tail:
        return ""
    row = sh.row
    order = sorted(range(len(sh.values)), key=lambda i: -sh.values[i])
    # pct() takes the nearest rank: the p99 is this many rounds from the top (2 of 100..199).
    count = len(sh.values) - max(1, math.ceil(0.99 * len(sh.values))) + 1
    slowest = sorted(order[:count])
    fault_median, cpu_median = median(row["faults"]), median(row["cpu_ms"])
    rounds, first, loaded, heavier, plain = [], [], [], [], []
    for i in slowest:
        other, cpu, faults = _at(sh.other, i), _at(row["cpu_ms"], i), _at(row["faults"], i)
        detail = f"round {i + 1} ({num(sh.values[i])} ms"
        if i < FIRST_ROUNDS and faults is not None and faults > 2 * max(fault_median, 1):
            detail += f", {num(faults, 0)} page faults against a median of {num(fault_median, 0)}"
            first.append(i + 1)
        elif other is not None and other >= 0.5:
            detail += f", the rest of the machine busy on {num(other, 2)} CPUs"
            loaded.append(i + 1)
        elif cpu is not None and cpu > 1.3 * cpu_median:
            detail += f", the workers' CPU {num(cpu, 1)} ms, median {num(cpu_median, 1)}"
            heavier.append(i + 1)
        else:
            plain.append(i + 1)
        rounds.append(detail + ")")
    why = []
    if first:
        why.append(
            f"{_rounds(first)} {'was' if len(first) == 1 else 'were'} among the first "
            f"{FIRST_ROUNDS} changes after the workers started, when each forked process runs "
            "its change path for the first time"
        )
    if loaded:
        why.append(f"{_rounds(loaded)} shared the machine with other load")
    if heavier:
        why.append(f"{_rounds(heavier)} cost the workers more CPU than most")
    if plain:
        why.append(f"for {_rounds(plain)} the figures show no cause (the machine's noise)")
    return (
        f"A p99 of {plural(sh.published, 'round')} is set by the slowest "
        f"{_NUMBERS.get(count, str(count))}: "
        + " and ".join(rounds)
        + ". "
        + "".join(f"{w[0].upper()}{w[1:]}. " for w in why)
        + f"The p50 is {num(sh.p50)} ms, {times(ratio(sh.p50, best.tail))} the best peer's "
        f"p99 ({num(best.tail)} ms): the target turns on those few rounds."
    )


_NUMBERS = {2: "two", 3: "three", 4: "four"}


def _rounds(numbers: Sequence[int]) -> str:
    if len(numbers) == 1:
        return f"round {numbers[0]}"
    return "rounds " + " and ".join(str(n) for n in numbers)


def _at(values: Sequence[float] | None, i: int) -> float | None:
    return values[i] if values and i < len(values) else None


def slow_round(p: Prop, i: int) -> str:
    """One slow round with what else happened during it (``i`` counts from 0)."""
    row = p.row
    value = p.values[i]
    parts = [f"round {i + 1}: " + ("missed" if value == INF else f"{num(value, 0)} ms")]
    other = _at(p.other, i)
    if other is not None:
        parts.append(f"other load {num(other, 2)} CPUs (row median {num(median(p.other), 2)})")
    cpu, busiest = _at(row["cpu_ms"], i), _at(row.get("cpu_max_ms"), i)
    if cpu is not None:
        text = f"workers' CPU {num(cpu, 0)} ms (row median {num(median(row['cpu_ms']), 0)})"
        if busiest is not None:
            text += f", the busiest worker {num(busiest, 0)} ms"
        parts.append(text)
    faults = _at(row.get("faults"), i)
    if faults is not None:
        parts.append(f"{num(faults, 0)} page faults (row median {num(median(row['faults']), 0)})")
    steal = _at(row.get("steal_ms"), i)
    if steal is not None:
        parts.append(f"steal {num(steal, 0)} ms")
    collected = _at(row.get("gc_workers"), i)
    if collected is not None:
        parts.append(f"{plural(int(collected), 'worker')} ran a full garbage collection")
    harness = _at(row.get("harness_ms"), i)
    if harness is not None:
        parts.append(
            f"harness CPU {num(harness, 0)} ms (row median {num(median(row['harness_ms']), 0)})"
        )
    return ", ".join(parts)


def slow_md(facts: Facts, ours: bool = True) -> str:
    lines = []
    for p in facts.prop:
        if p.ours != ours or (not ours and (not p.slow or not p.reached)):
            continue
        head = f"{p.client}, {p.mode}, {plural(p.workers, 'worker')}"
        slow = [i - 1 for i, _, _ in p.slow]
        if not slow:
            lines.append(f"{head}: none in {plural(p.published, 'round')}.")
            continue
        listed = "; ".join(slow_round(p, i) for i in slow)
        lines.append(f"{head}: {plural(len(slow), 'round')} of {p.published}: {listed}.")
    return bullets(lines)


def _verdict(verdict: str) -> str:
    return verdict.replace("missed", "Missed") if verdict.startswith("*") else verdict.capitalize()


def findings_md(facts: Facts) -> str:
    parts: list[str] = []
    w = facts.largest
    p = facts.row(OURS, BEFORE, w)
    if p is not None:
        verdict, r, best = _target(p, facts, 1.0)
        parts.append(
            f"**Propagation, {w} workers built before fork: p99 ≤ the best peer built in each "
            f"worker.** {_verdict(verdict)}: {p.tail_name} "
            f"{num(p.tail)} ms against {num(best.tail) if best else '—'} ms "
            f"({best.client if best else '—'}), {vs_target(r, 1.0)}. " + cause_md(facts)
        )
    sh = facts.row(SHARED, BEFORE, w)
    if sh is not None and p is not None:
        verdict, r, best = _target(sh, facts, 0.5)
        parts.append(
            f"**`share_poll=True`, {w} workers built before fork: p99 ≤ 0.5x the best peer.** "
            f"{_verdict(verdict)}: {sh.tail_name} "
            f"{num(sh.tail)} ms, {vs_target(r, 0.5)}"
            + (
                f" (built in each worker: {times(facts.vs_best(inw))})"
                if (inw := facts.row(SHARED, IN_WORKER, w)) is not None
                else ""
            )
            + ". Only the leader fetches; the followers get the "
            f"release over a local socket, so the host spends {num(sh.cpu, 1)} ms of CPU per "
            f"update against {num(p.cpu, 1)} ms without sharing, and the config service sees "
            f"{num(sh.configs, 1)} fetch and {num(sh.polls, 1)} poll per publish against "
            f"{num(p.configs, 1)} and {num(p.polls, 1)}, and {num(sh.held, 0)} held connection "
            f"against {num(p.held, 0)}." + (f" {why}" if (why := shared_cause_md(facts)) else "")
        )
    if facts.prop:
        others = [o for q in facts.prop for o in q.other]
        parts.append(
            f"**Rounds over {SLOW_MS:.0f} ms (every aioapollo row).** Each is listed with what "
            "else happened during it: the load the rest of the machine put on it (busy CPU "
            "time from `/proc/stat` minus the row's workers and the harness, over the round's "
            f"length; {facts.nproc} means every CPU busy elsewhere; over all rounds of the run "
            f"the median was {num(median(others) if others else None, 2)}), the CPU time of "
            "the row's workers and of the busiest one, their minor page faults, the *steal* "
            "time (`/proc/stat`: CPU time the hypervisor gave to other guests while this "
            "machine had work: the whole machine stood still), how many workers ran a full "
            "garbage collection, and "
            "the CPU time of the harness (the test servers included). Steal points at the "
            "virtual machine, other load at the rest of the machine, harness CPU at the "
            "harness, and more CPU in the workers without steal at the client.\n\n"
            + slow_md(facts)
            + (
                f"\n\nThe peers' rounds over {SLOW_MS:.0f} ms, the same way (rows that never "
                "update left out):\n\n" + slow_md(facts, ours=False)
                if any(not q.ours and q.slow and q.reached for q in facts.prop)
                else ""
            )
        )
        parts.append(one_second_md(facts))
    if "startup" in facts.sections:
        parts.append(startup_finding(facts.sections["startup"]))
    if "scale" in facts.sections:
        text = scale_finding(facts.sections["scale"])
        if text:
            parts.append(text)
    return "\n\n".join(part for part in parts if part)


def one_second_md(facts: Facts) -> str:
    counts = sorted({q.workers for q in facts.prop})
    maxima = []
    for client in ("aioapollo SyncApolloClient", "papollo"):
        found = [facts.row(client, BEFORE, w) for w in counts]
        if any(q is not None for q in found):
            values = " / ".join(num(q.max) if q is not None else "—" for q in found)
            maxima.append(f"{client} {values} ms")
    warned = sum(q.warnings for q in facts.prop if q.ours)
    return (
        "**The one-second rounds of earlier runs were the harness's.** `SyncApolloClient` and "
        "papollo built before fork poll from the parent too, so the parent's copy of the "
        "listener fired on every publish and wrote its report line to the report pipe, whose "
        "write end the parent had closed after forking. The test server, in the same process, "
        "had meanwhile been given that descriptor number for a worker's connection: the line "
        "went into an HTTP response, the worker's long poll failed to parse it and backed off "
        "(aioapollo's `backoff_initial` and papollo's first retry delay are both one second). "
        "The async client, never started in the parent, was never hit. The harness now drops "
        "reports made in a pool's parent, and every pool has a master process of its own. In "
        f"this run, the slowest round built before fork at {' / '.join(map(str, counts))} "
        f"workers: {'; '.join(maxima)}; the aioapollo workers logged "
        f"{plural(warned, 'warning')} during the rounds. Two smaller artifacts of the harness "
        "turned up on the way and are gone too: an automatic full garbage collection of the "
        "harness's own heap (the test servers and their request logs) stalled the servers "
        "in the middle of someone's round, and masters forked from the harness handed that "
        "heap to their workers, which paid for it in copy-on-write page faults, all in the "
        "same round. The harness now collects between turns, and the masters come from a "
        "zygote forked before any test server starts (see How it is measured)."
    )


def startup_finding(data: dict[str, Any]) -> str:
    floors = {r["size"]: r["ms"] for r in data["rows"] if r["floor"] and r["ms"]}
    if len(floors) < 2:
        return ""
    lo, hi = min(floors), max(floors)
    text = (
        f"**Start-up: about one round trip, not N?** The loads are concurrent (the `/ N "
        f"concurrent GETs` column), but against a loopback test server in the same process, "
        f"{hi} bare concurrent GETs cost {times(ratio(median(floors[hi]), median(floors[lo])), 1)}"
        " one GET in this run: the CPU (client and server) is the bottleneck, not the network."
    )
    starts = {(r["label"], r["size"]): r["ms"] for r in data["rows"] if not r["floor"]}
    cached = starts.get(("aioapollo `await start()`", hi))
    bare = starts.get(("aioapollo `await start()`, cache_dir=None", hi))
    if cached and bare:
        text += (
            f" A start that writes new cache files took {times(paired_ratio(cached, bare))} "
            f"one without a cache at {hi} namespaces (medians over turns): `start()` does not "
            "wait for the writes, but the writer's thread runs in the same process while "
            "`start()` finishes."
        )
    return text


def scale_finding(data: dict[str, Any]) -> str:
    n = max(data["params"]["sizes"])
    rows = {r["label"]: r for r in data["rows"] if r["size"] == n}
    ours, pap = rows.get("aioapollo"), rows.get("papollo `Apollo`")
    if not ours or not pap or not ours["update_ms"] or not pap["update_ms"]:
        return ""
    a, b = median(ours["update_ms"]), median(pap["update_ms"])
    slower = a > b
    return (
        f"**Updating a {n:,}-key namespace**: {num(a)} ms against papollo's {num(b)} ms "
        f"({times(ratio(a, b))}). "
        + (
            "aioapollo builds a per-key diff for `ConfigChangeEvent.changes` (a Python loop "
            "over every key) and type-checks every value while parsing; papollo compares the "
            "two dicts and hands its listeners the old and new mappings."
            if slower
            else "aioapollo's per-key diff for `ConfigChangeEvent.changes` does not make it "
            "slower here."
        )
    )


def readme_md(facts: Facts) -> str:
    r = facts.results
    m = r["machine"]
    intro = (
        f"`python bench/run.py` (`pip install -e '.[bench]'` brings the peers) measures "
        f"against the test server on loopback, with the other Python clients in the same run "
        f"taking turns with aioapollo, and quotes ratios to baselines from that run. Latest "
        f"run: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, {r['started_utc'][:10]}, "
        f"{r['seconds'] // 60} min; every figure here and in "
        f"[docs/benchmarks.md](docs/benchmarks.md) (tables, method, the slow rounds) is "
        f"generated from `{facts.name}` by `bench/report.py`."
    )
    cause = cause_md(facts)
    p = facts.row(OURS, BEFORE, facts.largest)
    if cause and p is not None:
        verdict, _, _ = _target(p, facts, 1.0)
        cause = f"**Why the {facts.largest}-worker target is {verdict.strip('*')}:** {cause}"
    shared = shared_cause_md(facts)
    if shared:
        shared = f"**Why the `share_poll=True` target is missed:** {shared}"
    return "\n\n".join(x for x in [intro, summary_md(facts, short=True), cause, shared] if x)


def trust_md(facts: Facts) -> str:
    r = facts.results
    loads = []
    for name, data in facts.sections.items():
        if data.get("load"):
            loads.append(f"{name} {', '.join(num(v, 2) for v in data['load'])}")
    others = [o for q in facts.prop for o in q.other]
    text = machine_md(facts)
    text += (
        f"\n\nLoad averages (1, 5, 15 min) at the end of each section: {'; '.join(loads)}. "
        if loads
        else "\n\n"
    )
    if others:
        text += (
            f"During the propagation rounds the rest of the machine kept a median of "
            f"{num(median(others), 2)} and a p90 of {num(pct(others, 90), 2)} of its "
            f"{facts.nproc} CPUs busy."
        )
    if r.get("quick"):
        text += " This was a `--quick` run: too few repetitions for any conclusion."
    return text.strip()


# ------------------------------------------------------------------------------ documents


def fill(markdown: str, width: int = 96) -> str:
    """Wrap prose paragraphs and bullets at ``width`` (tables and headings stay as they are)."""
    blocks = []
    for block in markdown.split("\n\n"):
        lines = block.split("\n")
        if any(line.startswith(("|", "#")) for line in lines):
            blocks.append(block)
            continue
        items: list[str] = []
        for line in lines:
            if line.startswith("- ") or not items:
                items.append(line)
            else:
                items[-1] += " " + line
        wrapped = [
            textwrap.fill(
                item,
                width,
                subsequent_indent="  " if item.startswith("- ") else "",
                break_long_words=False,
                break_on_hyphens=False,
            )
            for item in items
        ]
        blocks.append("\n".join(wrapped))
    return "\n\n".join(blocks)


def regions(results: dict[str, Any], name: str) -> dict[str, str]:
    facts = Facts(results, name)
    bodies = {
        "readme": readme_md(facts),
        "machine": trust_md(facts),
        "summary": summary_md(facts),
        "findings": findings_md(facts),
        "tables": tables_md(facts),
    }
    return {region: fill(body) for region, body in bodies.items()}


def replace_region(text: str, region: str, body: str) -> str:
    """``text`` with what stands between the markers of ``region`` replaced by ``body``."""
    pattern = re.compile(rf"(<!-- bench:{region} -->\n).*?(<!-- /bench:{region} -->)", re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"no <!-- bench:{region} --> ... <!-- /bench:{region} --> region")
    return pattern.sub(lambda m: f"{m.group(1)}{body}\n{m.group(2)}", text, count=1)


def rendered(results_path: Path) -> dict[str, str]:
    """Every document, as it should read for ``results_path``."""
    results = json.loads(results_path.read_text())
    if results.get("format") != FORMAT:
        raise ValueError(f"{results_path}: results format {results.get('format')}, not {FORMAT}")
    name = results_path.resolve().relative_to(ROOT).as_posix()
    bodies = regions(results, name)
    out = {}
    for doc, names in DOCUMENTS.items():
        text = (ROOT / doc).read_text()
        for region in names:
            text = replace_region(text, region, bodies[region])
        out[doc] = text
    return out


def newest_results() -> Path:
    """The newest committed results file (by its date name)."""
    found = sorted(p for p in RESULTS.glob("????-??-??*.json"))
    if not found:
        raise FileNotFoundError(f"no results file in {RESULTS}")
    return found[-1]


def dumps(results: dict[str, Any]) -> str:
    """JSON with one line per list of numbers, so a results file stays readable."""
    text = json.dumps(results, indent=1, ensure_ascii=False)
    return (
        re.sub(
            r"\[\n\s+([^\[\]{}]*?)\n\s*\]",
            lambda m: "[" + " ".join(part.strip() for part in m.group(1).split("\n")) + "]",
            text,
        )
        + "\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", type=Path, nargs="?", help="default: the newest committed")
    parser.add_argument("--check", action="store_true", help="exit 1 if a document differs")
    parser.add_argument("--print", action="store_true", help="print the full report instead")
    args = parser.parse_args()
    path = args.results or newest_results()
    if args.print:
        results = json.loads(path.read_text())
        print(full_markdown(results, path.name))
        return 0
    stale = []
    for doc, text in rendered(path).items():
        target = ROOT / doc
        if target.read_text() != text:
            stale.append(doc)
            if not args.check:
                target.write_text(text)
    if args.check and stale:
        print(f"out of date with {path}: {', '.join(stale)} (run bench/report.py)", file=sys.stderr)
        return 1
    print(f"{'stale' if args.check else 'rewrote'}: {', '.join(stale) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

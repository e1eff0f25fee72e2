"""Run every benchmark and write one results file: ``python bench/run.py [--quick]``.

Each section runs in a fresh interpreter (forked workers, peers' threads and tracemalloc must
not leak from one section into the next). The raw measurements of every section go to one
JSON file, ``bench/results/<UTC date>.json`` (``--quick``: ``bench/results/quick.json``,
not committed); the report printed at the end, and the figures in README.md and
docs/benchmarks.md, are made from that file by ``bench/report.py``::

    python bench/run.py
    python bench/report.py bench/results/2026-11-30.json   # rewrites the documents' figures
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c
import report

HERE = Path(__file__).resolve().parent
SECTIONS = ["read_cost", "propagation", "follower", "startup", "scale", "idle"]
#: Seconds a section may take before it is stopped and reported as failed.
SECTION_TIMEOUT = {"propagation": 720}
DISTRIBUTIONS = [
    "aioapollo",
    "papollo",
    "apollo-client-python",
    "apollocfg",
    "apollo-config-client",
    "pyapollo-zenkilan",
    "aiohttp",
]


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for dist in DISTRIBUTIONS:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few repetitions (smoke run)")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these")
    parser.add_argument("--out", type=Path, help="results file (default: see above)")
    args = parser.parse_args()
    started = datetime.datetime.now(datetime.UTC)
    out = args.out or HERE / "results" / (
        "quick.json" if args.quick else f"{started:%Y-%m-%d}.json"
    )
    began = time.monotonic()
    sections: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or SECTIONS:
            part = Path(tmp) / f"{name}.json"
            command = [sys.executable, str(HERE / f"{name}.py"), "--out", str(part)]
            if args.quick:
                command.append("--quick")
            print(f"== {name}", file=sys.stderr, flush=True)
            section_began = time.monotonic()
            try:
                done = subprocess.run(
                    command, timeout=SECTION_TIMEOUT.get(name, 400), stdout=sys.stderr
                )
            except subprocess.TimeoutExpired:
                failed.append(f"{name} (timed out)")
                continue
            seconds[name] = round(time.monotonic() - section_began, 1)
            print(f"== {name}: {seconds[name]:.0f} s", file=sys.stderr, flush=True)
            if done.returncode != 0 or not part.exists():
                failed.append(f"{name} (exit {done.returncode})")
                continue
            sections[name] = json.loads(part.read_text())["data"]
    results = {
        "format": report.FORMAT,
        "command": "python bench/run.py" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "started_utc": f"{started:%Y-%m-%d %H:%M}",
        "seconds": round(time.monotonic() - began),
        "section_seconds": seconds,
        "machine": c.machine(),
        "versions": versions(),
        "failed": failed,
        "sections": sections,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.dumps(results))
    markdown = report.full_markdown(results)
    (out.parent / "latest.md").write_text(markdown)
    print(markdown)
    print(f"results: {out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

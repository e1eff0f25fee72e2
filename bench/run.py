"""Run every benchmark and write one markdown report: ``python bench/run.py [--quick]``.

Each section runs in a fresh interpreter (forked workers, peers' threads and tracemalloc must
not leak from one section into the next). The report goes to stdout and to
``bench/results/latest.md``; ``--quick`` is a smoke run with few repetitions.
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

HERE = Path(__file__).resolve().parent
SECTIONS = ["read_cost", "propagation", "startup", "scale", "idle"]
DISTRIBUTIONS = [
    "aioapollo",
    "papollo",
    "apollo-client-python",
    "apollocfg",
    "apollo-config-client",
    "pyapollo-zenkilan",
    "aiohttp",
]


def versions() -> str:
    found = []
    for dist in DISTRIBUTIONS:
        try:
            found.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{dist} (not installed)")
    return ", ".join(found)


def render(sections: list[dict[str, Any]], header: list[str]) -> str:
    parts = list(header)
    for section in sections:
        parts += ["", f"### {section['title']}", "", c.table(section["columns"], section["rows"])]
        if section.get("notes"):
            parts.append("")
            parts += [f"- {note}" for note in section["notes"]]
    return "\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few repetitions (smoke run)")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these")
    parser.add_argument(
        "--out", type=Path, default=HERE / "results" / "latest.md", help="markdown report"
    )
    args = parser.parse_args()
    began = time.monotonic()
    sections: list[dict[str, Any]] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or SECTIONS:
            out = Path(tmp) / f"{name}.json"
            command = [sys.executable, str(HERE / f"{name}.py"), "--out", str(out)]
            if args.quick:
                command.append("--quick")
            print(f"== {name}", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                done = subprocess.run(command, timeout=400, stdout=sys.stderr)
            except subprocess.TimeoutExpired:
                failed.append(f"{name} (timed out)")
                continue
            print(f"== {name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
            if done.returncode != 0 or not out.exists():
                failed.append(f"{name} (exit {done.returncode})")
                continue
            sections += json.loads(out.read_text())
    info = c.machine()
    header = [
        "## Benchmarks",
        "",
        f"Command: `python bench/run.py{' --quick' if args.quick else ''}` "
        f"({time.monotonic() - began:.0f} s), "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {info['nproc']} CPUs (`nproc`), {info['cpu']}, Python {info['python']}, "
        f"{info['platform']}.",
        f"Versions: {versions()}.",
    ]
    if failed:
        header.append(f"Sections that failed: {', '.join(failed)}.")
    report = render(sections, header)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

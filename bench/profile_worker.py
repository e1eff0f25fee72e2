"""Where a propagation worker's time goes: merge the workers' cProfile files and print the top.

    mkdir prof
    BENCH_PROFILE_DIR=$PWD/prof python bench/propagation.py --only aioapollo \\
        --mode "built before fork" --workers 16 --rounds 100 --kills 0
    python bench/profile_worker.py prof

With ``BENCH_PROFILE_DIR`` set, every worker runs under ``cProfile`` and writes
``worker-<pid>.prof`` there when it stops (``bench/_workers.py``). This script merges them and
prints the functions with the most own time, and the calls of aioapollo with the most
cumulative time, each as a share of all profiled time. The profiles count the CPU time of
the thread that runs the worker's event loop (``time.thread_time``), not time spent waiting:
a ``SyncApolloClient``'s poller thread and the cache writer's thread are not in it.
Profiling slows a worker down several times: use it to see where the time goes, never for
the figures.
"""

from __future__ import annotations

import argparse
import pstats
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path, help="the BENCH_PROFILE_DIR of the run")
    parser.add_argument("--top", type=int, default=25, help="how many functions to list")
    args = parser.parse_args()
    files = sorted(args.directory.glob("worker-*.prof"))
    if not files:
        print(f"no worker-*.prof in {args.directory}", file=sys.stderr)
        return 1
    stats = pstats.Stats(str(files[0]))
    for more in files[1:]:
        stats.add(str(more))
    entries = stats.stats.items()  # type: ignore[attr-defined]
    total = sum(st[2] for _, st in entries) or 1.0
    print(f"{len(files)} workers, {total:.3f} s of CPU time profiled\n")
    print("most own time:")
    by_own = sorted(entries, key=lambda item: -item[1][2])[: args.top]
    for (path, line, name), st in by_own:
        print(f"  {st[2] / total:6.1%}  {st[1]:>8} calls  {Path(path).name}:{line} {name}")
    print("\naioapollo, most cumulative time:")
    ours = [item for item in entries if "/aioapollo/" in item[0][0]]
    for (path, line, name), st in sorted(ours, key=lambda item: -item[1][3])[: args.top]:
        print(f"  {st[3] / total:6.1%}  {st[1]:>8} calls  {Path(path).name}:{line} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

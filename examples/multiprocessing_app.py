"""multiprocessing with spawn or forkserver: the client is built anew in each child.

A client cannot be handed to a child (pickling one raises a TypeError that says so). Build it
at module level instead (``multiprocessing_config.py``): a ``spawn`` child imports that module
again and builds and starts its own client, and so does a ``forkserver`` child, unless the
forkserver preloads the module (``preload``): then the forkserver loads once, as a preforking
master that keeps no thread, and every child forked from it polls by itself.

    APP_ID=demo-app APOLLO_CONFIG_SERVICE=http://127.0.0.1:8080 \\
        python examples/multiprocessing_app.py spawn 2 bonjour

Each child prints a ``ready`` JSON line, then waits (at most a minute) until its own listener
saw ``greeting`` become the value given on the command line, prints ``changed`` and exits.
The parent exits 0 once every child did.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time

from multiprocessing_config import cfg, greetings, seen


def say(event: str, **fields: object) -> None:
    # One write per line: the children share the parent's output with unbuffered logging.
    sys.stdout.write(json.dumps({"event": event, "pid": os.getpid(), **fields}) + "\n")
    sys.stdout.flush()


def child(expected: str) -> None:
    deadline = time.monotonic() + 60
    while not cfg.polling and time.monotonic() < deadline:  # a forked child's poller starts
        time.sleep(0.01)
    say("ready", greeting=cfg.get("greeting"), polling=cfg.polling)
    with seen:
        if not seen.wait_for(lambda: expected in greetings, deadline - time.monotonic()):
            sys.exit(f"child {os.getpid()} never saw greeting={expected!r}")
    say("changed", greeting=cfg.get("greeting"))


def main() -> int:
    method, count, expected = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ctx = multiprocessing.get_context(method)
    if "preload" in sys.argv[4:]:
        ctx.set_forkserver_preload(["multiprocessing_config"])  # type: ignore[attr-defined]
    procs = [ctx.Process(target=child, args=(expected,)) for _ in range(count)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    cfg.close()
    return 0 if all(proc.exitcode == 0 for proc in procs) else 1


if __name__ == "__main__":
    sys.exit(main())

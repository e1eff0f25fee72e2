"""The demo: one publish reaches every worker of real preforking servers.

1. The embedded Apollo test server, a FastAPI app under gunicorn with 4 uvicorn workers and
   ``--preload`` (the client is built at import in the arbiter, started in each worker's
   lifespan): publish a change, print for each worker pid when it saw the new value.
2. The same for a Flask app under uWSGI prefork (4 workers, no ``lazy-apps``) with
   ``SyncApolloClient`` created and read at import time in the master.

Exits 0 only if every worker of both servers updated.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_asgi  # the examples directory is on sys.path, not a package
import demo_wsgi


def main() -> int:
    print("== FastAPI under gunicorn, 4 uvicorn workers, --preload ==", flush=True)
    asgi_ok = demo_asgi.run()
    print("\n== Flask under uWSGI prefork, 4 workers, no lazy-apps ==", flush=True)
    wsgi_ok = demo_wsgi.run()
    ok = asgi_ok and wsgi_ok
    print("\n" + ("OK: every worker of both servers updated" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

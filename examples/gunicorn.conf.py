"""gunicorn settings for an ASGI app using aioapollo: uvicorn workers, app preloaded.

    gunicorn -c examples/gunicorn.conf.py examples.fastapi_app:app

With ``preload_app`` the app module is imported once in the arbiter and the workers are forked
from it: the ``ApolloClient`` built at import is inert there (no thread, socket or loop to lose
in the fork), and the ASGI lifespan (``apollo_lifespan``) starts it inside each worker's own
event loop. Each worker therefore runs its own long poll: N workers, N connections to Apollo.

Do not start the client from a gunicorn hook: ``post_fork``, ``post_worker_init`` and friends
run before the worker's event loop exists.
"""

import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
# uvicorn.workers is deprecated; the worker lives in the uvicorn-worker package now.
# gunicorn >= 24 also has its own asyncio worker: worker_class = "asgi".
worker_class = "uvicorn_worker.UvicornWorker"
preload_app = True
# Shutdown closes each worker's client (cancels its held poll): seconds, not minutes.
graceful_timeout = 20

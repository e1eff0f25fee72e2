"""gunicorn settings for examples/flask_app.py with sync workers.

    APP_ID=demo-app APOLLO_CONFIG_SERVICE=http://127.0.0.1:8080 \
        gunicorn -c examples/gunicorn_sync.conf.py --chdir examples flask_app:app

``preload_app`` is safe: the app's SyncApolloClient loads once in the arbiter, keeps no thread
running there, and each worker starts its own poller right after fork. No ``post_fork`` hook
is needed. With ``preload_app``, a SIGHUP (also what ``reload_server_on_change`` sends) starts
new workers from the arbiter's copy of the app: build per-worker resources such as database
engines lazily in the worker, from ``cfg.get(...)``, not at import time.
"""

bind = "127.0.0.1:8000"
workers = 4
worker_class = "sync"
preload_app = True
graceful_timeout = 10

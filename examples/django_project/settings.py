"""Django settings read from Apollo with SyncApolloClient, for WSGI and ASGI servers alike.

Settings are imported once per process. The client is built and started here, so settings can
read from it: under ``gunicorn --preload`` (or uWSGI without ``lazy-apps``) that is the
master, which loads and keeps no thread; each worker then polls by itself. Under ASGI servers
(Daphne, ``uvicorn --workers N``) every process polls in a daemon thread. ``SyncApolloClient``
reads work from any thread, so sync and async views both use ``settings.APOLLO.get(...)``.

Values Django reads once (``DATABASES``, ``SECRET_KEY``) cannot change in a running process:
``reload_server_on_change`` asks the server for one graceful reload per release (see
``examples/django_settings.py``). Listeners are registered in ``apps.py`` (``ready()``).
"""

from __future__ import annotations

import os

from aioapollo import SyncApolloClient

APOLLO = SyncApolloClient.from_env()
APOLLO.start()

SECRET_KEY = APOLLO.get("django.secret_key") or os.environ.get("DJANGO_SECRET_KEY", "dev-only")
DEBUG = APOLLO.get_bool("django.debug", False)
ALLOWED_HOSTS = APOLLO.get_list("django.allowed_hosts", ["127.0.0.1", "localhost"])

INSTALLED_APPS = ["django_project.apps.ApolloConfig"]
ROOT_URLCONF = "django_project.urls"
WSGI_APPLICATION = "django_project.wsgi.application"
ASGI_APPLICATION = "django_project.asgi.application"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"pid": {"format": "%(asctime)s %(process)d %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "pid"}},
    "loggers": {
        "aioapollo": {"handlers": ["console"], "level": "INFO"},
        "django_project": {"handlers": ["console"], "level": "INFO"},
    },
}

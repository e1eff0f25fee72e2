"""How to use SyncApolloClient in Django settings (an excerpt of a project's settings.py).

Settings are read once per process, at import. Start the client there: under uWSGI or
``gunicorn --preload`` that is the master, which loads the config and keeps no thread running;
each worker polls Apollo by itself after fork. Values that Django reads only at startup
(``DATABASES``, ``INSTALLED_APPS``) cannot change in a running process: for those, ask the
server for one graceful reload. Values your code reads per request come from ``APOLLO.get``
and are always current.

    # myproject/views.py
    from django.conf import settings
    from django.http import JsonResponse

    def feature(request):
        return JsonResponse({"enabled": settings.APOLLO.get_bool("feature.enabled", False)})
"""

from __future__ import annotations

import os
from pathlib import Path

from aioapollo import SyncApolloClient, reload_server_on_change

BASE_DIR = Path(__file__).resolve().parent

# APP_ID, APOLLO_META or APOLLO_CONFIG_SERVICE, APOLLO_ACCESS_KEY_SECRET, ... come from the
# environment, like the Java client; keyword arguments win over it.
APOLLO = SyncApolloClient.from_env(namespaces=["application", "django.json"], allow_empty=True)
APOLLO.start()

SECRET_KEY = APOLLO.get("django.secret_key") or os.environ["DJANGO_SECRET_KEY"]
DEBUG = APOLLO.get_bool("django.debug", False)
ALLOWED_HOSTS = APOLLO.get_list("django.allowed_hosts", ["localhost"])

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": APOLLO.get("db.name", "app"),
        "HOST": APOLLO.get("db.host", "localhost"),
        "PORT": APOLLO.get_int("db.port", 5432),
        "USER": APOLLO.get("db.user", "app"),
        "PASSWORD": APOLLO.get("db.password", ""),
    }
}

# Django builds its connections from DATABASES once: a change of any db.* key needs new
# workers. One graceful reload per release, whichever worker notices first.
reload_server_on_change(APOLLO, prefixes=["db."])

# A structured namespace (db.json-style): the parsed document is on the snapshot.
CACHES_CONFIG = APOLLO.snapshot("django.json").data or {}

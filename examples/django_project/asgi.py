"""ASGI entry point: ``daphne django_project.asgi:application`` or ``uvicorn --workers N``."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_project.settings")
application = get_asgi_application()

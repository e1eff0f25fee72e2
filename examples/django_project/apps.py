"""The project's AppConfig: listeners are registered once Django is set up."""

from __future__ import annotations

import logging
import os

from django.apps import AppConfig
from django.conf import settings

from aioapollo import ConfigChangeEvent

log = logging.getLogger("django_project")


class ApolloConfig(AppConfig):
    name = "django_project"

    def ready(self) -> None:
        @settings.APOLLO.on_change(keys=["greeting"])
        def greeting_changed(event: ConfigChangeEvent) -> None:
            # In every worker process, in a helper thread (never a request thread).
            log.info("django %s sees greeting=%r", os.getpid(), settings.APOLLO.get("greeting"))

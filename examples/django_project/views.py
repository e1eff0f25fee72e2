"""Views read the current value: a dict lookup, never I/O, from any thread."""

from __future__ import annotations

import os

from django.conf import settings
from django.http import HttpRequest, JsonResponse


def greeting(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"pid": os.getpid(), "greeting": settings.APOLLO.get("greeting", "hello")})


async def greeting_async(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"pid": os.getpid(), "greeting": settings.APOLLO.get("greeting", "hello")})

"""Applying injected faults to requests: pick the first matching fault, then misbehave."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextlib import suppress

from aiohttp import web

from ._http import JSON
from ._models import Fault, RecordedRequest

__all__ = ["apply_fault", "take_fault"]

#: What a ``reset`` fault sends of its body before closing (it announces 4096 bytes).
_RESET_BODY = b'{"appId":"'
_RESET_LENGTH = 4096


def take_fault(faults: Iterable[Fault], record: RecordedRequest) -> Fault | None:
    """The first pending fault matching ``record``, counted as used."""
    for fault in faults:
        if not fault.exhausted and fault.matches(record):
            fault.hits += 1
            return fault
    return None


def _drop(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=204)  # never sent: the connection is gone


async def apply_fault(
    fault: Fault, request: web.Request, closing: asyncio.Event
) -> tuple[web.StreamResponse | None, int | None]:
    """Apply ``fault``: returns the response and the status to record.

    ``(None, None)`` means "answer normally" (a delay-only fault). A dropped or hung request
    records no status. ``closing`` (the server is closing) ends delays and hangs with a drop.
    """
    if fault.delay:
        with suppress(TimeoutError):
            async with asyncio.timeout(fault.delay):
                await closing.wait()
        if closing.is_set():
            return _drop(request), None
    if fault.status is not None:
        body = fault.body.encode() if isinstance(fault.body, str) else fault.body
        return web.Response(status=fault.status, body=body), fault.status
    if fault.drop:
        return _drop(request), None
    if fault.reset:
        response = web.StreamResponse(status=200, headers={"Content-Type": JSON})
        response.content_length = _RESET_LENGTH
        await response.prepare(request)
        await response.write(_RESET_BODY)
        _drop(request)
        return response, 200
    if fault.garbage not in (None, False):
        return web.Response(body=fault.garbage_body(), content_type=JSON), 200
    if fault.hang:
        await closing.wait()
        return _drop(request), None
    return None, None

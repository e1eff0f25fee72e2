"""Applying injected faults to requests: pick the first matching fault, then misbehave."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from contextlib import suppress
from typing import Any

from aiohttp import web

from ._http import JSON
from ._models import Fault, RecordedRequest

__all__ = ["apply_fault", "cut_after", "take_fault"]

#: A response and the status to record (``None``: nothing was sent).
Answer = tuple[web.StreamResponse | None, int | None]
Reply = tuple[web.StreamResponse, int | None]

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


async def apply_fault(fault: Fault, request: web.Request, closing: asyncio.Event) -> Answer:
    """Apply ``fault``: returns the response and the status to record.

    ``(None, None)`` means "answer normally" (a delay-only fault, or the upstream side of a
    ``cut_after`` fault: :func:`cut_after` applies the rest). A dropped or hung request
    records no status. ``closing`` (the server is closing) ends delays and hangs with a drop.
    """
    if fault.delay:
        with suppress(TimeoutError):
            async with asyncio.timeout(fault.delay):
                await closing.wait()
        if closing.is_set():
            return _drop(request), None
    if fault.cut_after is not None:
        return None, None
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


def _gateway_page(status: int) -> bytes:
    reason = {502: "Bad Gateway", 504: "Gateway Time-out"}.get(status, "Proxy Error")
    return f"<html><body><h1>{status} {reason}</h1></body></html>\n".encode()


async def cut_after(
    fault: Fault, request: web.Request, answer: Coroutine[Any, Any, Reply]
) -> Reply:
    """Run ``answer`` behind a proxy whose read timeout is ``fault.cut_after`` seconds.

    An answer ready in time passes through. Otherwise the answer is cancelled (a held long
    poll is forgotten, as when its client goes away) and the proxy answers instead: the
    fault's ``status`` with its ``body`` (an HTML error page by default), or, for ``drop``,
    a closed connection.
    """
    assert fault.cut_after is not None
    timer = asyncio.timeout(fault.cut_after)
    try:
        async with timer:
            return await answer
    except TimeoutError:
        if not timer.expired():
            raise
    if fault.drop or fault.status is None:
        return _drop(request), None
    body = fault.body if fault.body is not None else _gateway_page(fault.status)
    if isinstance(body, str):
        body = body.encode()
    content_type = "text/html" if fault.body is None else None
    return web.Response(status=fault.status, body=body, content_type=content_type), fault.status

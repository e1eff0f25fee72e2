"""Helpers for the test-server tests: an HTTP client that sends URLs exactly as written."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy
from yarl import URL

from aioapollo._apollo.wire import build_query


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Http:
    """GETs with the target sent byte for byte as given (no re-quoting by yarl)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def request(
        self, method: str, url: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Reply:
        async with self.session.request(
            method, URL(url, encoded=True), headers=headers, **kwargs
        ) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    async def get(self, url: str, *, headers: dict[str, str] | None = None) -> Reply:
        return await self.request("GET", url, headers=headers)


@pytest.fixture
async def http() -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(session)


def notifications_query(app_id: str, entries: list[tuple[str, int]], **extra: str) -> str:
    """The query of a long poll, form-escaped like the Java client."""
    body = json.dumps(
        [{"namespaceName": name, "notificationId": nid} for name, nid in entries],
        separators=(",", ":"),
    )
    params = {"appId": app_id, "cluster": "default", "notifications": body, **extra}
    return build_query(params.items())

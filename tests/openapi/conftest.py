"""Fixtures for the portal OpenAPI tests: a test server with a token, a client, and a check of
every OpenAPI request and response against the project's schemas (written from the spec)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest

from aioapollo.openapi import ApolloOpenApiClient
from aioapollo.openapi._spec import OPERATIONS, schema_for
from aioapollo.testing import ApolloTestServer, OpenApiExchange

APP = "test-app"
TOKEN = "0123456789abcdef-ci-token"
ENV = "DEV"
NS = {"env": ENV, "app_id": APP, "namespace": "application"}

#: Fast retries for tests.
FAST: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.05, "timeout": 5.0}


def _path_pattern(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


def spec_problems(exchange: OpenApiExchange) -> list[str]:
    """What in one exchange breaks the spec (paths, query names, bodies, error bodies)."""
    if exchange.operation is None:
        return []
    op = OPERATIONS.get(exchange.operation)
    where = f"{exchange.method} {exchange.path} ({exchange.operation})"
    if op is None:
        return [f"{where}: the server routes an operation the spec table does not have"]
    problems = []
    if op.method != exchange.method or not _path_pattern(op.path).match(exchange.path):
        problems.append(f"{where}: not the spec's {op.method} {op.path}")
    extra = set(exchange.query) - set(op.query)
    if extra:
        problems.append(f"{where}: query parameters not in the spec: {sorted(extra)}")

    def check(value: Any, schema_name: str, what: str) -> None:
        validator = jsonschema.Draft202012Validator(schema_for(schema_name))
        problems.extend(f"{where}: {what}: {err.message}" for err in validator.iter_errors(value))

    if op.request is None:
        if exchange.request is not None:
            problems.append(f"{where}: a body was sent to an operation that takes none")
    elif exchange.request is None:
        problems.append(f"{where}: no body sent ({op.request} expected)")
    else:
        check(exchange.request, op.request, "request")
    if exchange.status == 200 and exchange.response is not None:
        if op.response is None:
            problems.append(f"{where}: a body was answered for an operation that has none")
        else:
            check(exchange.response, op.response, "response")
    elif exchange.status >= 400 and isinstance(exchange.response, dict):
        if "exception" in exchange.response:
            check(exchange.response, "ExceptionResponse", "error body")
    return problems


@pytest.fixture
async def server() -> AsyncIterator[ApolloTestServer]:
    """A test server with ``application`` released for APP and a token for APP; every OpenAPI
    exchange is checked against the schemas, and the test fails if one breaks them."""
    seen: list[OpenApiExchange] = []
    async with ApolloTestServer(hold_seconds=0.5) as server:
        server.openapi_observer = seen.append
        server.publish(APP, "application", {"greeting": "hello", "timeout": "30"})
        server.add_openapi_token(TOKEN, apps=[APP])
        yield server
    problems = [problem for exchange in seen for problem in spec_problems(exchange)]
    assert not problems, "\n".join(problems)


@pytest.fixture
def portal(server: ApolloTestServer) -> ApolloTestServer:
    """The test server (overriding the suite's ``server``, so ``make_client`` uses it too)."""
    return server


@pytest.fixture
async def api(portal: ApolloTestServer) -> AsyncIterator[ApolloOpenApiClient]:
    async with ApolloOpenApiClient(portal.url, token=TOKEN, operator="ci-bot", **FAST) as client:
        yield client

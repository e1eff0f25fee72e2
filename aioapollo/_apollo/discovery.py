"""Which config services to talk to: a fixed list, or one discovered from meta servers."""

from __future__ import annotations

import asyncio
import logging
import random
import time

from .._config import ClientOptions, redact_url
from .._exceptions import (
    ApolloConnectionError,
    ApolloError,
    ApolloHTTPStatusError,
    ApolloResponseError,
)
from .protocol import parse_services, services_target
from .transport import Transport, status_error

__all__ = ["ServicePool"]

logger = logging.getLogger("aioapollo")


class ServicePool:
    """The current config-service URLs, with a sticky pick for the long poll.

    With ``config_server=`` the list is fixed. With ``meta_server=`` it comes from
    ``/services/config`` (meta servers tried in random order, two rounds a second apart)
    and is refreshed by the client's refresh loop.

    A service that could not be reached is put last for a while (``min(backoff_max, 30)``
    seconds): discovery may list a dead instance for minutes, and picking it again would cost
    every request that tries it first a failed connection, or a whole connect timeout.
    """

    def __init__(self, options: ClientOptions, transport: Transport) -> None:
        self._options = options
        self._transport = transport
        self._services: list[str] = list(options.config_servers)
        self._poll_service: str | None = None
        self._cooldown = min(options.backoff_max, 30.0)
        self._unreachable: dict[str, float] = {}
        self._discovery_error: ApolloConnectionError | None = None

    @property
    def discovers(self) -> bool:
        """Whether the list comes from meta servers."""
        return not self._options.config_servers

    @property
    def services(self) -> tuple[str, ...]:
        """The config services known now."""
        return tuple(self._services)

    async def refresh(self) -> None:
        """Re-read the service list from the meta servers (no-op with a fixed list).

        Raises :class:`ApolloConnectionError` naming every meta server and why it gave no
        config service (refused, an HTTP status, not JSON, an empty list).
        """
        if not self.discovers:
            return
        why: dict[str, str] = {}
        last: ApolloError | None = None
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(self._options.fetch_retry_delay)
            metas = list(self._options.meta_servers)
            random.shuffle(metas)
            for meta in metas:
                where = redact_url(meta) + "/services/config"
                try:
                    reply = await self._transport.get(
                        meta, services_target(self._options.app_id, self._options.ip), sign=False
                    )
                    if reply.status != 200:
                        raise status_error(reply, where)
                    urls = parse_services(reply.body, where)
                except ApolloError as exc:
                    last = exc
                    why[meta] = _reason(exc, where)
                    continue
                if urls:
                    if set(urls) != set(self._services):
                        logger.info(
                            "config services for %s: %s",
                            self._options.app_id,
                            [redact_url(url) for url in urls],
                        )
                    self._services = urls
                    self._discovery_error = None
                    if self._poll_service not in urls:
                        self._poll_service = None
                    return
                why[meta] = f"{where}: lists no config service (is one running and registered?)"
        metas = list(dict.fromkeys(m for m in self._options.meta_servers if m in why))
        reasons = "; ".join(why[meta] for meta in metas)
        error = ApolloConnectionError(
            f"service discovery found no config service: {reasons}. Check that meta_server= / "
            "APOLLO_META is the Apollo meta server of the right environment"
        )
        self._discovery_error = error
        raise error from last

    def no_service_error(self) -> ApolloConnectionError:
        """The error for "no config service to ask": why discovery failed, when it did."""
        found = self._discovery_error
        if found is None:
            return ApolloConnectionError("no config service is known")
        error = ApolloConnectionError(str(found))
        error.__cause__ = found.__cause__
        return error

    def ordered(self, prefer: str | None = None) -> list[str]:
        """All services in random order, unreachable ones last, ``prefer`` first."""
        healthy = self._healthy()
        random.shuffle(healthy)
        cooling = [s for s in self._services if s not in healthy]
        random.shuffle(cooling)
        services = healthy + cooling
        if prefer in services:
            services.remove(prefer)
            services.insert(0, prefer)
        return services

    def poll_service(self, avoid: str | None = None) -> str | None:
        """The service to long-poll: kept until dropped, then a random other, reachable one."""
        if self._poll_service is None and self._services:
            choices = (
                [s for s in self._healthy() if s != avoid]
                or [s for s in self._services if s != avoid]
                or self._services
            )
            self._poll_service = random.choice(choices)
        return self._poll_service

    def mark_unreachable(self, url: str) -> None:
        """Put ``url`` last for a while: a connection to it failed or timed out."""
        if url in self._services:
            self._unreachable[url] = time.monotonic() + self._cooldown

    def unreachable(self) -> tuple[str, ...]:
        """The services put last now (their cooldown has not ended)."""
        now = time.monotonic()
        return tuple(url for url, until in self._unreachable.items() if until > now)

    def _healthy(self) -> list[str]:
        if not self._unreachable:
            return list(self._services)
        now = time.monotonic()
        for url, until in list(self._unreachable.items()):
            if until <= now:
                del self._unreachable[url]
        return [s for s in self._services if s not in self._unreachable]

    def drop_poll_service(self) -> None:
        """Forget the long-poll pick (after an error, or at random to spread load)."""
        self._poll_service = None


def _reason(exc: ApolloError, where: str) -> str:
    """One meta server's failure, with a hint when the reply was not a meta server's."""
    if isinstance(exc, ApolloHTTPStatusError):
        return f"{where}: HTTP {exc.status} (is it an Apollo meta server?)"
    if isinstance(exc, ApolloResponseError):
        return f"{exc} (is it an Apollo meta server?)"
    return str(exc)

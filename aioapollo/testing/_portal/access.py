"""Who may call the OpenAPI: consumer tokens and Apollo 3.0's user access tokens, their rate
limits, and the access keys that make the config service require signed requests."""

from __future__ import annotations

import math
import secrets
import time
from typing import Any

from .core import PortalCore
from .model import Consumer, bad, missing, now

__all__ = ["USER_TOKEN_PREFIX", "AccessMixin"]

#: How Apollo 3.0's user access tokens begin (sent as ``Authorization: Bearer apollo_pat_...``).
USER_TOKEN_PREFIX = "apollo_pat_"
_BEARER = "Bearer "
_MAX_ACCESS_KEYS = 5  # Apollo's limit per app and environment


class AccessMixin(PortalCore):
    """Consumers, user tokens, rate limits and access keys."""

    def add_consumer(self, consumer: Consumer) -> None:
        """Accept ``consumer.token`` (replacing a consumer with the same token)."""
        if not consumer.token:
            raise ValueError("a token must not be empty")
        if consumer.user is not None and not consumer.token.startswith(USER_TOKEN_PREFIX):
            raise ValueError(f"a user access token starts with {USER_TOKEN_PREFIX!r}")
        if consumer.rate_limit is not None and not consumer.rate_limit > 0:
            raise ValueError("rate_limit must be positive")
        with self.store.lock:
            self._consumers[consumer.token] = consumer

    def consumer(self, token: str | None) -> Consumer | None:
        """The consumer holding ``token`` (the ``Authorization`` header as sent)."""
        token = token or ""
        with self.store.lock:
            if token.startswith(_BEARER):
                found = self._consumers.get(token[len(_BEARER) :].strip())
                return found if found is not None and found.user is not None else None
            found = self._consumers.get(token)
            return found if found is not None and found.user is None else None

    @staticmethod
    def is_user_token(header: str | None) -> bool:
        """Whether the header carries a user access token (rather than a consumer's)."""
        rest = (header or "").removeprefix(_BEARER)
        return rest != header and rest.strip().startswith(USER_TOKEN_PREFIX)

    def throttle(self, consumer: Consumer) -> float | None:
        """Take one request from the token's budget: ``None`` if allowed, else the seconds
        until the next request would be (a token bucket of ``rate_limit`` per second)."""
        rate = consumer.rate_limit
        if rate is None:
            return None
        with self.store.lock:
            clock = time.monotonic()
            tokens, last = self._buckets.get(consumer.token, (max(rate, 1.0), clock))
            tokens = min(max(rate, 1.0), tokens + (clock - last) * rate)
            if tokens >= 1.0:
                self._buckets[consumer.token] = (tokens - 1.0, clock)
                return None
            self._buckets[consumer.token] = (tokens, clock)
            return (1.0 - tokens) / rate

    @staticmethod
    def retry_after(wait: float) -> str:
        """A ``Retry-After`` header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait)))

    @property
    def has_consumers(self) -> bool:
        with self.store.lock:
            return bool(self._consumers)

    # -------------------------------------------------------------------- access keys

    def _key_json(self, key: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in key.items() if k != "env"}

    def _apply_keys(self, app_id: str) -> None:
        enabled = [
            k["secret"]
            for k in self._access_keys.values()
            if k["appId"] == app_id and k["enabled"] and k["mode"] == 0
        ]
        self.store.set_secret(app_id, enabled or None)

    def access_keys(self, app_id: str) -> list[dict[str, Any]]:
        with self.store.lock:
            self._app(app_id)
            keys = [k for k in self._access_keys.values() if k["appId"] == app_id]
            return [self._key_json(k) for k in keys]

    def create_access_key(self, app_id: str, operator: str) -> dict[str, Any]:
        with self.store.lock:
            self._app(app_id)
            if sum(k["appId"] == app_id for k in self._access_keys.values()) >= _MAX_ACCESS_KEYS:
                raise bad(f"AccessKeys count limit exceeded {_MAX_ACCESS_KEYS}")
            key_id = next(self._key_ids)
            stamp = now()
            self._access_keys[key_id] = {
                "id": key_id,
                "secret": secrets.token_hex(16),
                "appId": app_id,
                "mode": 0,
                "enabled": False,
                "dataChangeCreatedBy": operator,
                "dataChangeLastModifiedBy": operator,
                "dataChangeCreatedTime": stamp,
                "dataChangeLastModifiedTime": stamp,
            }
            return self._key_json(self._access_keys[key_id])

    def _access_key(self, app_id: str, key_id: int) -> dict[str, Any]:
        key = self._access_keys.get(key_id)
        if key is None or key["appId"] != app_id:
            raise missing(f"AccessKey not exist. appId:{app_id}, id:{key_id}")
        return key

    def switch_access_key(
        self, app_id: str, key_id: int, operator: str, *, enabled: bool, mode: int = 0
    ) -> None:
        if mode not in (0, 1):
            raise bad(f"invalid access key mode:{mode}")
        with self.store.lock:
            key = self._access_key(app_id, key_id)
            key.update(
                enabled=enabled,
                mode=mode if enabled else key["mode"],
                dataChangeLastModifiedBy=operator,
                dataChangeLastModifiedTime=now(),
            )
            self._apply_keys(app_id)

    def delete_access_key(self, app_id: str, key_id: int, operator: str) -> None:
        del operator  # recorded nowhere else in this test server
        with self.store.lock:
            key = self._access_key(app_id, key_id)
            if key["enabled"]:
                raise bad("AccessKey should disable first")
            del self._access_keys[key_id]

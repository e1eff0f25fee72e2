"""Apollo access-key signatures: pure functions, no I/O.

The config service checks ``Authorization: Apollo <appId>:<sig>`` and ``Timestamp: <ms>`` where
``sig = Base64(HMAC-SHA1(secret, f"{timestamp}\\n{path_with_query}"))`` over the path and query
*exactly as sent on the wire* (still percent-encoded, same parameter order, no host).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

__all__ = ["auth_headers", "sign"]


def sign(timestamp_ms: str, path_with_query: str, secret: str) -> str:
    """Return the Base64 HMAC-SHA1 signature Apollo expects.

    Args:
        timestamp_ms: Epoch milliseconds as a decimal string (13 digits today).
        path_with_query: The raw request target, e.g. ``/configs/app/default/ns?ip=1.2.3.4``.
        secret: The access-key secret, used as UTF-8 text (never hex-decoded).
    """
    message = f"{timestamp_ms}\n{path_with_query}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def auth_headers(
    app_id: str, path_with_query: str, secret: str, *, now_ms: int | None = None
) -> dict[str, str]:
    """Build the ``Authorization`` and ``Timestamp`` headers for one request."""
    timestamp = str(int(time.time() * 1000) if now_ms is None else now_ms)
    return {
        "Authorization": f"Apollo {app_id}:{sign(timestamp, path_with_query, secret)}",
        "Timestamp": timestamp,
    }

"""The access-key signature vectors of docs/apollo-protocol.md (section 9), and header shape."""

import pytest

from aioapollo._apollo.auth import auth_headers, sign

#: The three vectors of docs/apollo-protocol.md, section 9:
#: (timestamp, path with query, secret, signature).
#: The test server's own tests check its filter against the same ones.
VECTORS = [
    (
        "1576478257344",
        "/configs/100004458/default/application?ip=10.0.0.1",
        "df23df3f59884980844ff3dada30fa97",
        "EoKyziXvKqzHgwx+ijDJwgVTDgE=",
    ),
    (
        "1700000000000",
        "/notifications/v2?appId=SampleApp&cluster=default&notifications=%5B%7B%22namespaceName"
        "%22%3A%22application%22%2C%22notificationId%22%3A-1%7D%2C%7B%22namespaceName%22%3A%22"
        "FX.apollo%22%2C%22notificationId%22%3A100%7D%5D&ip=192.168.1.10",
        "0123456789abcdef0123456789abcdef",
        "KxCbA8ZMDGxeFIj3Jb5OzNrXGZk=",
    ),
    (
        "1712345678901",
        "/configs/SampleApp/default/application?releaseKey=20240101120000-1a2b3c4d5e6f7a8b%2B"
        "20240101120001-8b7a6f5e4d3c2b1a&ip=10.1.2.3&messages=%7B%22details%22%3A%7B%22SampleApp"
        "%2Bdefault%2Bapplication%22%3A101%7D%7D&label=gray",
        "s3cr3t-\u00dcnicode",
        "dZIxvW5QP197Rs9IrkLiu1GiQGA=",
    ),
]


@pytest.mark.parametrize(("timestamp", "path", "secret", "expected"), VECTORS)
def test_signature_vectors(timestamp: str, path: str, secret: str, expected: str) -> None:
    assert sign(timestamp, path, secret) == expected


def test_headers_name_app_and_carry_millisecond_timestamp() -> None:
    headers = auth_headers("100004458", VECTORS[0][1], VECTORS[0][2], now_ms=1576478257344)
    assert headers == {
        "Authorization": "Apollo 100004458:EoKyziXvKqzHgwx+ijDJwgVTDgE=",
        "Timestamp": "1576478257344",
    }


def test_default_timestamp_is_13_digit_milliseconds() -> None:
    assert len(auth_headers("a", "/x", "s")["Timestamp"]) == 13

"""The ``stats().as_dict()`` example in docs/observability.md names exactly the fields a client
reports: a field added to ``ClientStats`` (or dropped from it) fails here until the page says so.
"""

from __future__ import annotations

import json
from typing import Any

from ..conftest import ClientFactory
from ._blocks import ROOT, parse

PAGE = ROOT / "docs" / "observability.md"


def documented() -> dict[str, Any]:
    """The page's JSON example of ``as_dict()`` (the one JSON block naming ``app_id``)."""
    found = [b for b in parse(PAGE) if b.lang == "json" and '"app_id"' in b.code]
    assert len(found) == 1, [b.where for b in found]
    shown: dict[str, Any] = json.loads(found[0].code)
    return shown


async def test_the_documented_stats_example_has_every_field(make_client: ClientFactory) -> None:
    client = make_client()
    client.on_change(lambda _event: None)
    async with client:
        real = client.stats().as_dict()
    doc = documented()
    assert sorted(doc) == sorted(real)  # no resources: that key only shows when there are some
    assert sorted(doc["namespaces"]["application"]) == sorted(real["namespaces"]["application"])
    assert sorted(doc["listeners"]) == sorted(real["listeners"])

"""A human publishes something bad: the last good parsed value stays, the error is reported.

The raw text is always applied exactly as released (``content``), so what the client holds is
what Apollo holds; only ``data`` (the parsed JSON/YAML) keeps the last value that parsed, and
``parse_error`` (on the snapshot and on the change event) says why. YAML is loaded with the
safe loader: tags that would build Python objects or run code are parse errors, never run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aioapollo.testing import ApolloTestServer

from ..conftest import APP, ClientFactory, Events

pytest.importorskip("yaml")

BAD_TEXTS = {
    ("db.json", "empty"): "",
    ("db.json", "blank"): "  \n\t\n",
    ("db.json", "unparsable"): '{"url": "postgres://db", "pool": ',
    ("db.json", "truncated"): '{"url": "postgres://db"',
    ("app.yaml", "empty"): "",
    ("app.yaml", "unparsable"): "feature: [unclosed\n  - x: : :\n",
    ("app.yaml", "tabs"): "feature:\n\tenabled: true\n",
}

GOOD = {"db.json": '{"url": "postgres://db", "pool": 5}', "app.yaml": "feature:\n  on: yes\n"}


@pytest.mark.parametrize(("namespace", "kind"), list(BAD_TEXTS))
async def test_bad_publish_keeps_the_last_parsed_value_and_reports_it(
    namespace: str,
    kind: str,
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.publish(APP, namespace, GOOD[namespace])
    client = make_client(namespaces=["application", namespace])
    client.on_change(events)
    await client.start()
    good = (await client.namespace(namespace)).data
    assert good and client.snapshot(namespace).parse_error is None

    bad = BAD_TEXTS[(namespace, kind)]
    server.publish(APP, namespace, bad)
    event = await events.next()
    snap = client.snapshot(namespace)
    assert snap.content == bad  # the raw text is exact
    assert event.snapshot is snap
    assert snap.data == good  # the parsed value is the last good one
    assert snap.parse_error and event.snapshot.parse_error == snap.parse_error
    assert bad.strip() == "" or bad not in snap.parse_error  # says where, not what
    logged = [r for r in caplog.records if "keeping the last parsed value" in r.message]
    assert len(logged) == 1 and logged[0].levelname == "WARNING"

    server.publish(APP, namespace, GOOD[namespace].replace("5", "6").replace("yes", "no"))
    await events.next()
    fixed = client.snapshot(namespace)
    assert fixed.parse_error is None and fixed.data != good


async def test_yaml_tags_are_never_evaluated(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "pwned"
    server.publish(APP, "app.yaml", "safe: true\n")
    client = make_client(namespaces=["application", "app.yaml"])
    client.on_change(events)
    await client.start()
    for payload in (
        f"x: !!python/object/apply:os.system ['touch {marker}']\n",
        f"x: !!python/object/new:subprocess.Popen [['touch', '{marker}']]\n",
        "x: !!python/name:os.system\n",
    ):
        server.publish(APP, "app.yaml", payload)
        await events.next()
        snap = client.snapshot("app.yaml")
        assert snap.content == payload
        assert snap.data == {"safe": True} and snap.parse_error
    assert not marker.exists()

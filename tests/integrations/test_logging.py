"""configure_logging: logging from an Apollo namespace, checked, applied live, kept on error."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from aioapollo import ApolloClient
from aioapollo.integrations.logging import configure_logging
from aioapollo.testing import ApolloTestServer

from ..conftest import APP, ClientFactory

NAME = "aioapollo-test-app"  # the loggers these tests configure


class Captured(logging.Handler):
    """Collects records (for dictConfig's "()" factory: one list per test)."""

    records: ClassVar[list[logging.LogRecord]] = []

    def emit(self, record: logging.LogRecord) -> None:
        Captured.records.append(record)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    app = logging.getLogger(NAME)
    Captured.records = []
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    for name in (NAME, f"{NAME}.db"):
        lg = logging.getLogger(name)
        lg.setLevel(logging.NOTSET)
        for handler in list(lg.handlers):
            lg.removeHandler(handler)
            handler.close()
        lg.propagate = True
    assert app is logging.getLogger(NAME)


def dict_config(level: str = "INFO", fmt: str = "%(message)s", **extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "formatters": {"plain": {"format": fmt}},
        "handlers": {
            "capture": {
                "()": f"{__name__}.Captured",
                "formatter": "plain",
                "level": "DEBUG",
            }
        },
        "loggers": {NAME: {"level": level, "handlers": ["capture"], "propagate": False}},
        **extra,
    }


async def publish_and_wait(
    server: ApolloTestServer, client: ApolloClient, ns: str, data: dict[str, str]
) -> None:
    heard = asyncio.Event()

    async def on_change(event: Any) -> None:
        heard.set()

    client.add_listener(on_change, namespaces=[ns])
    server.publish(APP, ns, data)
    await asyncio.wait_for(heard.wait(), 10)
    client.remove_listener(on_change)


async def test_a_yaml_dict_config_applies_at_start_and_levels_change_in_place(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    pytest.importorskip("yaml")
    import yaml

    server.publish(APP, "logging.yaml", {"content": yaml.safe_dump(dict_config("INFO"))})
    client = make_client(namespaces=["application", "logging.yaml"])
    handle = configure_logging(client)  # before start: the first load applies it
    await client.start()
    app = logging.getLogger(NAME)
    assert app.level == logging.INFO and handle.applied == 1 and handle.error is None
    handler = app.handlers[0]
    app.debug("hidden")
    app.info("shown")
    await publish_and_wait(
        server, client, "logging.yaml", {"content": yaml.safe_dump(dict_config("DEBUG"))}
    )
    assert app.level == logging.DEBUG and app.handlers == [handler]  # same handler object
    app.debug("now shown")
    assert [r.getMessage() for r in Captured.records] == ["shown", "now shown"]
    # Anything else than levels: rebuilt by dictConfig.
    await publish_and_wait(
        server,
        client,
        "logging.yaml",
        {"content": yaml.safe_dump(dict_config("DEBUG", fmt="> %(message)s"))},
    )
    assert app.handlers and app.handlers[0] is not handler and handle.applied == 3


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"version": 2}, "needs 'version: 1'"),
        ([1, 2], "not a mapping"),
        (dict_config("LOUD"), f"loggers.{NAME}.level: not a logging level"),
        (
            {**dict_config(), "root": {"handlers": ["nope"]}},
            "root: no handler 'nope'",
        ),
        (
            {**dict_config(), "handlers": {"x": {"class": "no.such.Handler"}}},
            "handlers.x: its 'class' cannot be imported",
        ),
        (
            {
                **dict_config(),
                "handlers": {
                    "capture": {"()": f"{__name__}.Captured"},
                    "file": {"class": "logging.FileHandler", "filename": "/nonexistent/x.log"},
                },
            },
            "dictConfig failed: Unable to configure handler 'file' (FileNotFoundError",
        ),
    ],
)
async def test_a_bad_release_keeps_the_previous_configuration_and_says_why(
    server: ApolloTestServer,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
    bad: Any,
    reason: str,
) -> None:
    server.publish(APP, "logging.json", {"content": json.dumps(dict_config("WARNING"))})
    client = make_client(namespaces=["application", "logging.json"])
    await client.start()
    handle = configure_logging(client, "logging.json")  # after start: applied now
    app = logging.getLogger(NAME)
    assert app.level == logging.WARNING
    handler = app.handlers[0]
    await publish_and_wait(server, client, "logging.json", {"content": json.dumps(bad)})
    assert handle.error is not None and reason in handle.error
    assert "not applied" in caplog.text and reason in caplog.text
    assert "/nonexistent" not in caplog.text  # values stay out of the log
    assert app.level == logging.WARNING and app.handlers[0].level == handler.level
    assert app.handlers[0].formatter is not None
    app.warning("still here")
    assert Captured.records[-1].getMessage() == "still here"


async def test_the_properties_form_sets_and_resets_levels(
    server: ApolloTestServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server.publish(
        APP, "logging", {"level.root": "ERROR", f"level.{NAME}.db": "debug", "other": "x"}
    )
    client = make_client(namespaces=["application", "logging"])
    handle = configure_logging(client, "logging")
    await client.start()
    assert logging.getLogger().level == logging.ERROR
    assert logging.getLogger(f"{NAME}.db").level == logging.DEBUG
    await publish_and_wait(server, client, "logging", {f"level.{NAME}.db": "NOPE"})
    assert "level." + NAME + ".db: not a logging level" in (handle.error or "")
    assert logging.getLogger(f"{NAME}.db").level == logging.DEBUG  # kept
    await publish_and_wait(server, client, "logging", {f"level.{NAME}": "INFO"})
    assert logging.getLogger(f"{NAME}.db").level == logging.NOTSET  # its key went away
    assert logging.getLogger().level == logging.WARNING
    assert logging.getLogger(NAME).level == logging.INFO and handle.error is None
    handle.close()
    await publish_and_wait(server, client, "logging", {f"level.{NAME}": "DEBUG"})
    assert logging.getLogger(NAME).level == logging.INFO  # no longer followed


def test_an_unwatched_namespace_is_refused(tmp_path: Path) -> None:
    client = ApolloClient(APP, config_server="http://127.0.0.1:9", cache_dir=None)
    with pytest.raises(ValueError, match="not watched"):
        configure_logging(client)

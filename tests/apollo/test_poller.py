"""Pure pieces of the poller: backoff, rate limit and reply-name matching."""

import time

from aioapollo._apollo.poller import Backoff, Poller, _TokenBucket
from aioapollo._core.store import NamespaceStore


def test_backoff_grows_with_jitter_to_the_cap_and_resets() -> None:
    backoff = Backoff(1.0, 120.0)
    delays = [backoff.next() for _ in range(10)]
    ceilings = [1, 2, 4, 8, 16, 32, 64, 120, 120, 120]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert backoff.failures == 10
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.next() <= 1.0


def test_backoff_spreads_a_herd() -> None:
    firsts = {round(Backoff(8.0, 120.0).next(), 3) for _ in range(200)}
    assert len(firsts) > 150  # jitter: 200 clients do not retry in lockstep


async def test_token_bucket_allows_a_burst_then_limits() -> None:
    bucket = _TokenBucket(0.05, burst=3)
    start = time.monotonic()
    for _ in range(3):
        await bucket.take()
    assert time.monotonic() - start < 0.04  # the burst is free
    for _ in range(4):
        await bucket.take()
    assert time.monotonic() - start >= 0.15  # then about one per interval


def _poller(*names: str) -> Poller:
    async def refetch(targets, prefer):  # pragma: no cover - not called here
        return set()

    states = NamespaceStore(names).records
    return Poller(None, None, None, states, refetch)  # type: ignore[arg-type]


def test_reply_names_map_back_to_configured_names() -> None:
    poller = _poller("application.properties", "application", "db.json", "FX.apollo")
    assert sorted(poller.match("application")) == ["application", "application.properties"]
    assert poller.match("db.json") == ["db.json"]
    assert poller.match("fx.apollo") == ["FX.apollo"]  # case-insensitive fallback
    assert poller.match("unknown") == []


async def test_handle_merges_messages_and_asks_for_each_namespaces_new_position() -> None:
    """The poller names each notified namespace's new id and merged messages; the source
    advances them in the store with the release, for the namespaces it fetched only."""
    fetched: dict[str, tuple[int, dict[str, int]]] = {}

    async def refetch(targets, prefer):
        fetched.update(targets)
        return {"a"}  # "b" failed

    store = NamespaceStore(["a", "b"])
    store.advance("b", 5, {"app+default+b": 5})
    poller = Poller(None, None, None, store.records, refetch)  # type: ignore[arg-type]
    from aioapollo._apollo.protocol import Notification

    ok = await poller._handle(
        [
            Notification("a", 10, {"app+default+a": 10}),
            Notification("b", 12, {"app+dc+b": 12}),
        ],
        "http://x",
    )
    assert ok is False
    assert fetched["a"] == (10, {"app+default+a": 10})
    assert fetched["b"] == (12, {"app+default+b": 5, "app+dc+b": 12})
    # The poller itself moves nothing: "b" stays behind, so the next poll answers at once.
    assert store.records["b"].notification_id == 5

"""Encrypted values: what a decryptor costs on reads (nothing) and per release.

    python bench/decrypt.py [--quick] [--out FILE]

* Read cost: ``get_nowait`` of an ``ENC(...)`` key on a started client with a decryptor,
  against a plain key on a client without one (timeit, best of several rounds, taking turns).
* Release cost: a release of 1,000 encrypted values through the store's decryption step
  (``NamespaceStore.deliver``: the decrypting preparer, then the transform, the snapshot and
  the listeners' diff), for jasypt's default (PBKDF2-HMAC-SHA512, 1000 iterations, per value),
  Fernet, and an async decryptor; then the next release with one value changed (the other
  999 come from the cache). ``loop max stall`` is the longest the event loop was held up
  meanwhile (a 1 ms ticker): the key derivations run in a worker thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import timeit
from typing import Any

import _common as c

from aioapollo import ApolloClient
from aioapollo._core.decrypt import install
from aioapollo._core.store import NamespaceStore, Release
from aioapollo._hooks import HookSet
from aioapollo._models import Source
from aioapollo.crypto import Fernet, Jasypt
from aioapollo.testing import ApolloTestServer

VALUES = 1000


async def read_cost(number: int, repeat: int) -> dict[str, float]:
    jasypt = Jasypt("bench password")
    items = {"plain": "30", "secret": f"ENC({jasypt.encrypt('s3cr3t')})"}
    async with ApolloTestServer(hold_seconds=1) as apollo:
        apollo.publish("bench-app", "application", items)
        plain = ApolloClient("bench-app", config_server=apollo.url, cache_dir=None)
        decrypting = ApolloClient(
            "bench-app", config_server=apollo.url, cache_dir=None, decryptor=jasypt
        )
        async with plain, decrypting:
            assert decrypting.get_nowait("secret") == "s3cr3t"
            timers = {
                "get_nowait, no decryptor": timeit.Timer(lambda: plain.get_nowait("plain")),
                "get_nowait of an ENC key, with a decryptor": timeit.Timer(
                    lambda: decrypting.get_nowait("secret")
                ),
            }
            return c.best_ns(timers, number, repeat)


async def _stall_during(work: Any) -> tuple[float, float]:
    """(seconds ``work`` took, the longest the loop went without running a 1 ms ticker)."""
    worst = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.005)
    began = time.perf_counter()
    await work
    took = time.perf_counter() - began
    done = True
    await tick
    return took, worst


async def release_cost(name: str, decryptor: Any, encrypt: Any) -> dict[str, Any]:
    store = NamespaceStore(["application"])
    install(store, decryptor, app_id="bench-app", hooks=HookSet(None))
    items = {f"key.{i}": f"ENC({encrypt(f'value {i}')})" for i in range(VALUES)}
    first = Release(namespace="application", items=items, release_key="1", source=Source.REMOTE)
    took, stall = await _stall_during(store.deliver(first))
    assert store.values["application"]["key.7"] == "value 7"
    items = {**items, "key.0": f"ENC({encrypt('changed')})"}
    second = Release(namespace="application", items=items, release_key="2", source=Source.REMOTE)
    took_one, _ = await _stall_during(store.deliver(second))
    assert store.values["application"]["key.0"] == "changed"
    return {
        "decryptor": name,
        "values": VALUES,
        "release_ms": round(took * 1e3, 1),
        "per_value_us": round(took / VALUES * 1e6, 1),
        "loop_max_stall_ms": round(stall * 1e3, 1),
        "one_changed_ms": round(took_one * 1e3, 2),
    }


async def main(quick: bool) -> dict[str, Any]:
    reads = await read_cost(20_000 if quick else 300_000, 3 if quick else 15)
    jasypt, fernet = Jasypt("bench password"), Fernet(Fernet.generate_key())

    async def kms(text: str) -> str:  # an async decryptor that answers at once
        return text[::-1]

    releases = [
        await release_cost("Jasypt (PBEWITHHMACSHA512ANDAES_256)", jasypt, jasypt.encrypt),
        await release_cost("Fernet", fernet, fernet.encrypt),
        await release_cost("async decrypt(), instant", kms, lambda text: text[::-1]),
    ]
    return {"section": "decrypt", "data": {"reads_ns": reads, "releases": releases}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    result = asyncio.run(main(args.quick))
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    for name, ns in result["data"]["reads_ns"].items():
        print(f"{name:45} {ns:6.1f} ns")
    for row in result["data"]["releases"]:
        print(
            f"{row['decryptor']:40} {row['values']} values: {row['release_ms']:7.1f} ms "
            f"({row['per_value_us']:.1f} us each), loop max stall {row['loop_max_stall_ms']} ms; "
            f"next release, one changed: {row['one_changed_ms']} ms"
        )
    sys.exit(0)

"""What a flag read through the OpenFeature provider costs, next to a plain ``get_nowait``.

    python bench/openfeature_read.py [--quick] [--out FILE]

Starts the Apollo test server on a background loop and a SyncApolloClient against it (its
poller runs, so reads take the hot path), sets ``ApolloProvider`` as the SDK's provider, and
times one read with timeit, best of several rounds, the candidates taking turns in every
round so that load from other processes hits them alike:

- ``get_nowait``: the plain read the provider is measured against (a dict lookup);
- the provider's own ``resolve_boolean_details`` (lookup + conversion + result object);
- ``api.get_client().get_boolean_value``: the whole SDK path (hooks machinery, context
  merging, status check) around it, which dominates;
- targeting mode: flagd's evaluator running a JsonLogic rule and a fractional rollout.

docs/openfeature.md quotes the run committed under ``bench/results/openfeature/``.
"""

from __future__ import annotations

import json
import timeit
from typing import Any

import _common as c
from openfeature import api
from openfeature.evaluation_context import EvaluationContext

from aioapollo import SyncApolloClient
from aioapollo.integrations.openfeature import ApolloProvider

FLAGS = {
    "new-checkout": {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "off",
        "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on", "off"]},
    },
    "banner": {
        "state": "ENABLED",
        "variants": {"red": "red", "blue": "blue"},
        "defaultVariant": "red",
        "targeting": {"fractional": [["red", 50], ["blue", 50]]},
    },
}


def measure(candidates: dict[str, str], env: dict[str, Any], number: int, repeat: int) -> dict:
    """ns per call, best of ``repeat`` rounds, the candidates interleaved in each round."""
    timers = {name: timeit.Timer(stmt, globals=env) for name, stmt in candidates.items()}
    return c.best_ns(timers, number, repeat)


def main() -> None:
    args = c.cli(__doc__ or "")
    number, repeat = (2_000, 3) if args.quick else (50_000, 15)
    with c.ServerThread() as server:
        server.publish("bench", "application", {"dark-mode": "true", "limit": "42"})
        server.publish("bench", "flags.json", json.dumps({"flags": FLAGS}))
        cfg = SyncApolloClient(
            "bench",
            config_server=server.url,
            cache_dir=None,
            namespaces=["application", "flags.json"],
        )
        plain = ApolloProvider(cfg)
        targeting = ApolloProvider(cfg, flags_namespace="flags.json")
        api.set_provider_and_wait(plain)  # starts the client
        api.set_provider_and_wait(targeting, domain="targeting")
        assert cfg.polling
        env = {
            "cfg": cfg,
            "plain": plain,
            "of": api.get_client(),
            "tf": api.get_client("targeting"),
            "staff": EvaluationContext("user-1", {"email": "ann@example.com"}),
            "user": EvaluationContext("user-7"),
        }
        assert env["of"].get_boolean_value("dark-mode", False) is True
        assert env["tf"].get_boolean_value("new-checkout", False, env["staff"]) is True
        results = measure(
            {
                "get_nowait (plain read)": "cfg.get('dark-mode')",
                "provider.resolve_boolean_details": (
                    "plain.resolve_boolean_details('dark-mode', False)"
                ),
                "SDK get_boolean_value (plain mode)": "of.get_boolean_value('dark-mode', False)",
                "SDK get_integer_value (plain mode)": "of.get_integer_value('limit', 0)",
                "SDK get_boolean_value (flagd rule)": (
                    "tf.get_boolean_value('new-checkout', False, staff)"
                ),
                "SDK get_string_value (fractional)": "tf.get_string_value('banner', 'x', user)",
            },
            env,
            number,
            repeat,
        )
        api.shutdown()  # the provider started the client: this closes it
    if args.out is not None:
        data = {"number": number, "repeat": repeat, "load": c.load_average(), "reads_ns": results}
        result = {"section": "openfeature", "quick": args.quick, "data": data}
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    base = results["get_nowait (plain read)"]
    for name, ns in results.items():
        print(f"{name:38s} {ns:9.1f} ns   {ns / base:7.1f}x")


if __name__ == "__main__":
    main()

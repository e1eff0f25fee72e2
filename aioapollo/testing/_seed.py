"""Seed files: fill a test server from JSON or YAML (used by ``python -m aioapollo serve --data``).

Format (every key optional; YAML needs PyYAML, ``pip install aioapollo-client[yaml]``)::

    settings:                  # server settings, as in PUT /__aioapollo__/settings
      holdSeconds: 60
      incrementalSync: false
      timeToleranceSeconds: 60
      configServices: ["http://127.0.0.1:8080"]   # what /services/config lists
    apps:
      SampleApp:
        secret: null           # a string, a list of strings, or null
        namespaces:            # released to the "default" cluster
          application: {timeout: "100", db.url: "jdbc:mysql://db/app"}
          datasource.json: '{"url": "jdbc:..."}'   # text: a non-properties namespace
          not-yet-released: null                   # exists, but /configs answers 404
        public:                # public namespaces owned by this app ("default" cluster)
          TEST1.shared: {retries: "3"}
        clusters:              # releases to other clusters: cluster -> namespaces
          SHAJQ:
            application: {timeout: "200"}
        gray:                  # gray releases
          - namespace: application
            cluster: default   # optional
            ips: ["10.0.0.1"]  # and/or labels: ["canary"]; "*" matches every client
            items: {timeout: "300"}   # or content: "..."

Scalar values (numbers, booleans) are turned into strings (``true``/``false`` for booleans).
Public namespaces of every app are created first, so an app may override another app's public
namespace under ``namespaces``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._server import ApolloTestServer

__all__ = ["SeedError", "apply_seed", "load_seed"]


class SeedError(ValueError):
    """The seed file cannot be read or does not follow the format."""


def load_seed(path: str | Path) -> dict[str, Any]:
    """Read a seed file: YAML for ``.yaml``/``.yml``, JSON otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SeedError(f"cannot read seed file {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise SeedError(
                "YAML seed files need PyYAML: pip install 'aioapollo-client[yaml]' (or use JSON)"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SeedError(f"{path} is not valid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SeedError(f"{path} is not valid JSON: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SeedError(f"{path}: the top level must be a mapping")
    return data


def _text(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise SeedError(f"{where}: values must be strings or scalars, got {type(value).__name__}")


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SeedError(f"{where} must be a mapping")
    return value


def _data(value: Any, where: str) -> dict[str, str] | str:
    if isinstance(value, str):
        return value
    items = _mapping(value, where)
    return {str(key): _text(item, f"{where}.{key}") for key, item in items.items()}


def _publish(
    server: ApolloTestServer,
    app_id: str,
    namespaces: Mapping[str, Any],
    where: str,
    *,
    cluster: str = "default",
    public: bool = False,
) -> int:
    count = 0
    for name, value in namespaces.items():
        try:
            if value is None:
                server.create_namespace(app_id, name, public=public)
                continue
            server.publish(
                app_id, name, _data(value, f"{where}.{name}"), cluster=cluster, public=public
            )
            count += 1
        except (TypeError, ValueError) as exc:
            raise SeedError(f"{where}.{name}: {exc}") from None
    return count


def _gray(server: ApolloTestServer, app_id: str, rule: Any, where: str) -> None:
    rule = _mapping(rule, where)
    content = rule.get("content")
    data = content if isinstance(content, str) else _data(rule.get("items"), f"{where}.items")
    try:
        server.publish(
            app_id,
            str(rule["namespace"]),
            data,
            cluster=str(rule.get("cluster", "default")),
            gray_ips=[str(ip) for ip in rule.get("ips") or ()],
            gray_labels=[str(label) for label in rule.get("labels") or ()],
            gray_client_app_id=rule.get("clientAppId"),
        )
    except KeyError:
        raise SeedError(f"{where}: a gray release needs 'namespace'") from None
    except (TypeError, ValueError) as exc:
        raise SeedError(f"{where}: {exc}") from None


def apply_seed(server: ApolloTestServer, data: Mapping[str, Any], *, releases: bool = True) -> int:
    """Publish everything a seed describes to ``server``; returns the number of releases.

    With ``releases=False`` only the ``settings`` are applied (a server that kept its releases in
    a state file already has them, and may have newer ones).
    """
    unknown = set(data) - {"apps", "settings"}
    if unknown:
        raise SeedError(f"unknown top-level keys: {', '.join(sorted(unknown))}")
    settings = _mapping(data.get("settings"), "settings")
    if "holdSeconds" in settings:
        server.hold_seconds = float(settings["holdSeconds"])
    if "incrementalSync" in settings:
        server.incremental_sync = bool(settings["incrementalSync"])
    if "timeToleranceSeconds" in settings:
        server.time_tolerance_seconds = float(settings["timeToleranceSeconds"])
    if "configServices" in settings:
        services = settings["configServices"]
        if not isinstance(services, list):
            raise SeedError("settings.configServices must be a list of URLs")
        server.config_services = [str(url) for url in services]
    if not releases:
        return 0
    section = _mapping(data.get("apps"), "apps")
    apps = {str(app_id): _mapping(app, f"apps.{app_id}") for app_id, app in section.items()}
    count = 0
    for app_id, app in apps.items():
        public = _mapping(app.get("public"), f"apps.{app_id}.public")
        count += _publish(server, app_id, public, f"apps.{app_id}.public", public=True)
    for app_id, app in apps.items():
        where = f"apps.{app_id}"
        unknown = set(app) - {"secret", "namespaces", "public", "clusters", "gray"}
        if unknown:
            raise SeedError(f"{where}: unknown keys: {', '.join(sorted(unknown))}")
        count += _publish(
            server, app_id, _mapping(app.get("namespaces"), f"{where}.namespaces"), where
        )
        for cluster, namespaces in _mapping(app.get("clusters"), f"{where}.clusters").items():
            label = f"{where}.clusters.{cluster}"
            count += _publish(
                server, app_id, _mapping(namespaces, label), label, cluster=str(cluster)
            )
        gray = app.get("gray") or []
        if not isinstance(gray, list):
            raise SeedError(f"{where}.gray must be a list")
        for index, rule in enumerate(gray):
            _gray(server, app_id, rule, f"{where}.gray[{index}]")
            count += 1
        secret = app.get("secret")
        if secret is not None:
            if not isinstance(secret, str | list):
                raise SeedError(f"{where}.secret must be a string or a list of strings")
            server.set_secret(app_id, secret if isinstance(secret, str) else map(str, secret))
    return count

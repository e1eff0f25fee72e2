"""Typed, validated settings from an Apollo namespace (the ``pydantic`` extra:
``pip install 'aioapollo-client[pydantic]'``).

:func:`bind_settings` binds a namespace to a pydantic model and re-validates it on every
publish. An invalid publish is rejected: the app keeps the last valid settings object, the
error is logged and passed to ``on_error`` callbacks, and the next valid publish is applied.

With a :class:`ApolloBaseSettings` model (pydantic-settings) the precedence is
init arguments > environment > ``.env`` file > Apollo > secrets directory > field defaults.
pydantic-settings sources are synchronous, so :class:`ApolloSettingsSource` never touches the
network: it reads the snapshot the client already holds.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

try:
    import pydantic
    from pydantic.fields import FieldInfo
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
    from pydantic_settings.exceptions import SettingsError
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the packages
    raise ImportError(
        "aioapollo.integrations.pydantic needs pydantic and pydantic-settings: "
        "pip install 'aioapollo-client[pydantic]'"
    ) from exc

from .._client import ApolloClient
from .._exceptions import ApolloError
from .._models import ConfigChangeEvent, NamespaceSnapshot
from ._fields import field_key, snapshot_values

__all__ = [
    "ApolloBaseSettings",
    "ApolloSettingsSource",
    "LiveSettings",
    "SettingsValidationError",
    "bind_settings",
    "snapshot_values",
]

logger = logging.getLogger("aioapollo")

M = TypeVar("M", bound=pydantic.BaseModel)

#: The values the next :class:`ApolloSettingsSource` without an explicit snapshot reads.
_CURRENT: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "aioapollo_settings_values", default=None
)


class SettingsValidationError(ApolloError, ValueError):
    """A namespace's values do not validate against the bound model.

    The message and :attr:`errors` name fields and reasons only, never the offending values.

    Attributes:
        model: The model's class name.
        namespace: The namespace that was validated.
        release_key: Its release (``None`` for cache or empty starts).
        errors: ``({"loc": (...), "msg": ..., "type": ...}, ...)`` as pydantic reports them,
            without the input values.
    """

    def __init__(
        self,
        model: str,
        namespace: str,
        release_key: str | None,
        errors: tuple[dict[str, Any], ...],
    ) -> None:
        self.model = model
        self.namespace = namespace
        self.release_key = release_key
        self.errors = errors
        detail = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(model)'}: {e['msg']}" for e in errors
        )
        super().__init__(
            f"{model} from namespace {namespace!r} (release {release_key}) is invalid: {detail}"
        )


class ApolloSettingsSource(PydanticBaseSettingsSource):
    """A pydantic-settings source reading an already loaded namespace snapshot (no I/O).

    Args:
        settings_cls: The settings class (pydantic-settings passes it).
        snapshot: The values to read; by default those :class:`LiveSettings` is validating
            (outside of it: none, so the class still builds from env and defaults).
        case_sensitive: Match keys to field names exactly.
        nested_delimiter: Joins a nested model field's name and its subfield's in keys.
    """

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        snapshot: NamespaceSnapshot | Mapping[str, Any] | None = None,
        *,
        case_sensitive: bool = False,
        nested_delimiter: str | None = ".",
    ) -> None:
        super().__init__(settings_cls)
        self._snapshot = snapshot
        self._case_sensitive = case_sensitive
        self._delimiter = nested_delimiter

    def _values(self) -> dict[str, Any]:
        source = self._snapshot if self._snapshot is not None else _CURRENT.get()
        return snapshot_values(
            source,
            self.settings_cls,
            case_sensitive=self._case_sensitive,
            nested_delimiter=self._delimiter,
        )

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """The value for one field (``None`` when Apollo does not set it)."""
        key = field_key(field_name, field)
        return self._values().get(key), key, False

    def __call__(self) -> dict[str, Any]:
        return self._values()

    def __repr__(self) -> str:
        return f"<ApolloSettingsSource for {self.settings_cls.__name__}>"


class ApolloBaseSettings(BaseSettings):
    """``BaseSettings`` with Apollo as a source: init > env > .env > Apollo > secrets > defaults.

    Outside of :func:`bind_settings` the Apollo source is empty, so the class still builds from
    the environment and defaults (handy in tests and scripts).
    """

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Insert :class:`ApolloSettingsSource` between the ``.env`` file and secrets."""
        apollo = ApolloSettingsSource(settings_cls)
        return init_settings, env_settings, dotenv_settings, apollo, file_secret_settings


Callback = Callable[[Any], Awaitable[None] | None]


class LiveSettings(Generic[M]):
    """The current valid settings object of a namespace; see :func:`bind_settings`.

    Calling it returns :attr:`current`, so it is a FastAPI dependency as it is:
    ``settings: Annotated[AppSettings, Depends(live)]``.
    """

    def __init__(
        self,
        client: ApolloClient,
        model: type[M],
        *,
        namespace: str = "application",
        overrides: Mapping[str, Any] | None = None,
        case_sensitive: bool = False,
        nested_delimiter: str | None = ".",
    ) -> None:
        self._client = client
        self._model = model
        self._namespace = namespace
        self._overrides = dict(overrides or {})
        self._case_sensitive = case_sensitive
        self._delimiter = nested_delimiter
        self._current: M | None = None
        self._on_update: list[Callback] = []
        self._on_error: list[Callback] = []
        #: The last rejected release's error; ``None`` once a valid release is applied.
        self.last_error: SettingsValidationError | None = None
        # One bound method object: the registry finds listeners by identity.
        self._listener = self._changed
        self._closed = False
        client.add_listener(self._listener, namespaces=[namespace])

    @property
    def model(self) -> type[M]:
        """The bound model class."""
        return self._model

    @property
    def namespace(self) -> str:
        """The bound namespace."""
        return self._namespace

    @property
    def current(self) -> M:
        """The last valid settings object.

        Validated on first access if nothing was validated yet; raises
        :class:`SettingsValidationError` if the namespace's current values are invalid and no
        valid object exists, and ``ClientStateError`` before the namespace is loaded.
        """
        if self._current is None:
            self._current = self.validate(self._client.snapshot(self._namespace))
        return self._current

    def __call__(self) -> M:
        return self.current

    def validate(self, snapshot: NamespaceSnapshot) -> M:
        """Build a settings object from ``snapshot`` (does not install it)."""
        if snapshot.parse_error is not None:
            raise SettingsValidationError(
                self._model.__name__,
                self._namespace,
                snapshot.release_key,
                ({"loc": (), "msg": snapshot.parse_error, "type": "parse_error"},),
            )
        values = snapshot_values(
            snapshot,
            self._model,
            case_sensitive=self._case_sensitive,
            nested_delimiter=self._delimiter,
        )
        token = _CURRENT.set(values)
        try:
            if issubclass(self._model, BaseSettings):
                return self._model(**self._overrides)
            return self._model.model_validate({**values, **self._overrides})
        except pydantic.ValidationError as exc:
            errors = tuple(
                {"loc": tuple(e["loc"]), "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False, include_input=False, include_context=False)
            )
            raise SettingsValidationError(
                self._model.__name__, self._namespace, snapshot.release_key, errors
            ) from None
        except SettingsError as exc:
            error = {"loc": (), "msg": str(exc), "type": "settings_error"}
            raise SettingsValidationError(
                self._model.__name__, self._namespace, snapshot.release_key, (error,)
            ) from None
        finally:
            _CURRENT.reset(token)

    def on_update(self, callback: Callback) -> Callback:
        """Register ``callback(settings)``, called after each newly applied valid object
        (not for releases that change none of the model's fields)."""
        self._on_update.append(callback)
        return callback

    def on_error(self, callback: Callback) -> Callback:
        """Register ``callback(error)``, called with a :class:`SettingsValidationError` for
        each rejected release."""
        self._on_error.append(callback)
        return callback

    def close(self) -> None:
        """Stop following changes (the current object stays readable). Idempotent."""
        if not self._closed:
            self._closed = True
            self._client.remove_listener(self._listener)

    async def _changed(self, event: ConfigChangeEvent) -> None:
        try:
            settings = self.validate(event.snapshot)
        except SettingsValidationError as exc:
            self.last_error = exc
            logger.warning("%s; keeping the last valid settings", exc)
            await _notify(self._on_error, exc)
            return
        if settings == self._current and self.last_error is None:
            return  # the release changed no field of this model: keep the same object
        self._current = settings
        self.last_error = None
        logger.info(
            "%s re-validated from namespace %r (release %s)",
            self._model.__name__,
            self._namespace,
            event.snapshot.release_key,
        )
        await _notify(self._on_update, settings)


async def _notify(callbacks: list[Callback], arg: Any) -> None:
    for callback in list(callbacks):
        try:
            result = callback(arg)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception(
                "settings callback %s failed", getattr(callback, "__qualname__", callback)
            )


def bind_settings(
    client: ApolloClient,
    model: type[M],
    *,
    namespace: str = "application",
    overrides: Mapping[str, Any] | None = None,
    case_sensitive: bool = False,
    nested_delimiter: str | None = ".",
) -> LiveSettings[M]:
    """Bind ``namespace`` of ``client`` to ``model``; re-validated on every change.

    Call it before or after ``client.start()``. If the namespace is loaded already, the
    settings are validated at once (raising :class:`SettingsValidationError` if invalid, so
    an app fails fast at startup); otherwise on the first :attr:`LiveSettings.current`.

    Args:
        client: The Apollo client that watches ``namespace``.
        model: A pydantic ``BaseModel`` (fields filled from Apollo only) or an
            :class:`ApolloBaseSettings` (init > env > .env > Apollo > secrets > defaults).
        namespace: The namespace to read.
        overrides: Values that win over every source (init arguments).
        case_sensitive: Match keys to field names exactly.
        nested_delimiter: ``"."`` maps ``db.host`` to ``db: DbModel``'s ``host``.

    Returns:
        The :class:`LiveSettings`; ``live.current`` (or ``live()``) is the settings object.
    """
    live = LiveSettings(
        client,
        model,
        namespace=namespace,
        overrides=overrides,
        case_sensitive=case_sensitive,
        nested_delimiter=nested_delimiter,
    )
    if namespace in client.sources:
        try:
            live.current  # noqa: B018 - validates now, to fail fast
        except BaseException:
            live.close()
            raise
    return live

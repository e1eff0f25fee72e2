"""The public surface is exactly ``aioapollo.__all__``, sorted, and every name resolves."""

import aioapollo


def test_all_is_sorted_and_complete() -> None:
    # pytest rewrites this package (it ships a plugin) and adds "@py_*" names: skip those.
    public = {name for name in dir(aioapollo) if not name.startswith(("_", "@"))}
    exported = set(aioapollo.__all__) - {"__version__"}
    modules = {"testing", "integrations", "openapi", "crypto"}  # subpackages (imported)
    assert public - modules == exported
    assert list(aioapollo.__all__) == sorted(aioapollo.__all__)


def test_public_names_claim_the_package() -> None:
    for name in aioapollo.__all__:
        obj = getattr(aioapollo, name)
        if hasattr(obj, "__module__") and name != "ChangeListener":
            assert obj.__module__.startswith("aioapollo"), name


def test_public_classes_report_the_package_itself() -> None:
    classes = [getattr(aioapollo, n) for n in aioapollo.__all__]
    for cls in (c for c in classes if isinstance(c, type)):
        assert cls.__module__ == "aioapollo", cls
    assert repr(aioapollo.Role.LEADER).startswith("<Role.LEADER")


def test_every_option_is_a_named_typed_keyword_with_the_options_default() -> None:
    """ApolloClient's signature, ClientSettings and ClientOptions agree: no ``**options: Any``
    hides an option from IDEs and type checkers, and no default drifts."""
    import dataclasses
    import inspect
    import typing

    from aioapollo import ApolloClient, ClientOptions, ClientSettings

    params = inspect.signature(ApolloClient).parameters
    keywords = {n: p for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    assert set(keywords) == set(typing.get_type_hints(ClientSettings))
    renamed = {"config_servers": "config_server", "meta_servers": "meta_server"}
    for field in dataclasses.fields(ClientOptions):
        name = renamed.get(field.name, field.name)
        if name == "app_id":
            continue
        assert name in keywords, name
        if name not in ("namespaces", "config_server", "meta_server", "cache_dir"):
            assert keywords[name].default == field.default, name
    for param in keywords.values():
        assert "Any" not in str(param.annotation), param

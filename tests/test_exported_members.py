"""The public surface is exactly ``aioapollo.__all__``, sorted, and every name resolves."""

import aioapollo


def test_all_is_sorted_and_complete() -> None:
    # pytest rewrites this package (it ships a plugin) and adds "@py_*" names: skip those.
    public = {name for name in dir(aioapollo) if not name.startswith(("_", "@"))}
    exported = set(aioapollo.__all__) - {"__version__"}
    modules = {"testing", "integrations", "openapi"}  # subpackages imported by other tests
    assert public - modules == exported
    assert list(aioapollo.__all__) == sorted(aioapollo.__all__)


def test_public_names_claim_the_package() -> None:
    for name in aioapollo.__all__:
        obj = getattr(aioapollo, name)
        if hasattr(obj, "__module__") and name != "ChangeListener":
            assert obj.__module__.startswith("aioapollo"), name

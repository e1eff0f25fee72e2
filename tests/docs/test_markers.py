"""The docs test itself: markers are read as documented, and each kind can fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._blocks import Block, parse
from ._run import RUNNERS

PAGE = Path("page.md")


def one(text: str) -> Block:
    (block,) = parse(PAGE, text)
    return block


async def run(text: str, tmp_path: Path) -> None:
    block = one(text)
    assert not block.error, block.error
    await RUNNERS[block.kind](block, tmp_path)


def test_a_block_without_a_marker_fails_saying_how_to_mark_it() -> None:
    block = one("Some prose.\n\n```python\nprint('hi')\n```\n")
    assert block.error.startswith("page.md:3: this ```python block has no `<!-- test: ... -->`")
    for hint in ("<!-- test: program -->", "<!-- test: fragment: WHY", "expect: ", "pip"):
        assert hint in block.error


def test_a_marker_must_be_the_last_thing_before_the_fence() -> None:
    block = one("<!-- test: program -->\nProse in between.\n\n```python\nprint(1)\n```\n")
    assert "has no `<!-- test: ... -->` marker" in block.error
    block = one("<!-- a comment, not a marker -->\n```python\nprint(1)\n```\n")
    assert "has no `<!-- test: ... -->` marker" in block.error


def test_a_fence_must_name_its_language() -> None:
    assert "names no language" in one("<!-- test: text: a diagram -->\n```\n+--+\n```\n").error


def test_kind_detail_and_options_are_read() -> None:
    text = "\n".join(
        [
            "- a list item:",
            "",
            "  <!-- test: shell",
            "  with: test server",
            "  expect: one: two",
            "  expect: three",
            "  -->",
            "",
            "  ```bash",
            "  echo one: two",
            "    echo three",
            "  ```",
        ]
    )
    block = one(text)
    assert (block.error, block.kind, block.detail, block.line) == ("", "shell", "", 9)
    assert block.option("expect") == ["one: two", "three"]
    assert block.option("with") == ["test server"]
    assert block.code == "echo one: two\n  echo three\n"
    block = one("<!-- test: fragment: needs: a server -->\n```python\nx = 1\n```\n")
    assert (block.kind, block.detail) == ("fragment", "needs: a server")


@pytest.mark.parametrize(
    ("marker", "lang", "problem"),
    [
        ("programme", "python", "unknown marker kind 'programme'"),
        ("fragment", "python", "a `fragment` marker needs its REASON"),
        ("text: output", "python", "a `text` marker cannot go on a ```python block (only text)"),
        ("program: now", "python", "a `program` marker takes nothing after the kind"),
        ("parse", "python", "a `parse` marker cannot go on a ```python block"),
        ("program\nwith: test server", "python", "marker option 'with: test server' is not"),
        ("shell\nwith: apollo", "bash", "the only `with:` a shell block takes"),
        ("shell\njust words", "bash", "marker option 'just words' is not one of `shell`'s"),
    ],
)
def test_a_wrong_marker_fails_naming_the_problem(marker: str, lang: str, problem: str) -> None:
    block = one(f"<!-- test: {marker} -->\n```{lang}\nx\n```\n")
    assert problem in block.error
    assert "Kinds, with the fences each may go on:" in block.error


def test_an_unclosed_fence_fails() -> None:
    assert "never closed" in one("<!-- test: program -->\n```python\nprint(1)\n").error


async def test_a_program_passes_only_when_it_exits_0_and_prints_what_is_expected(
    tmp_path: Path,
) -> None:
    ok = "<!-- test: program\nexpect: hello\n-->\n```python\nprint('hello world')\n```\n"
    await run(ok, tmp_path)
    with pytest.raises(AssertionError, match="no 'goodbye' in"):
        await run(ok.replace("expect: hello", "expect: goodbye"), tmp_path)
    with pytest.raises(AssertionError, match="exit 3"):
        await run("<!-- test: program -->\n```python\nraise SystemExit(3)\n```\n", tmp_path)


async def test_a_program_that_touches_its_loop_from_a_thread_fails(tmp_path: Path) -> None:
    # What a plain listener setting an asyncio.Event does; only asyncio debug mode catches it.
    code = """import asyncio
import threading


async def main() -> None:
    loop = asyncio.get_running_loop()
    thread = threading.Thread(target=loop.call_soon, args=(print, "from a thread"))
    thread.start()
    thread.join()


asyncio.run(main())
"""
    with pytest.raises(AssertionError, match="'Traceback' on stderr"):
        await run(f"<!-- test: program -->\n```python\n{code}```\n", tmp_path)


async def test_a_program_that_leaks_fails(tmp_path: Path) -> None:
    code = "import sys\nopen(sys.executable, 'rb')\n"  # never closed: a ResourceWarning
    with pytest.raises(AssertionError, match="ResourceWarning"):
        await run(f"<!-- test: program -->\n```python\n{code}```\n", tmp_path)


async def test_a_shell_block_stops_at_its_first_failing_command(tmp_path: Path) -> None:
    text = "<!-- test: shell -->\n```bash\necho before\nfalse\necho after\n```\n"
    with pytest.raises(AssertionError, match=r"(?s)exit 1.*before.*FAILED \(exit 1\): false"):
        await run(text, tmp_path)


async def test_data_blocks_are_parsed(tmp_path: Path) -> None:
    await run('<!-- test: parse -->\n```json\n{"a": [1, 2]}\n```\n', tmp_path)
    await run("<!-- test: parse -->\n```ini\n[Service]\nEnvironment=APP_ID=%i\n```\n", tmp_path)
    with pytest.raises(ValueError):
        await run('<!-- test: parse -->\n```json\n{"a": [1, 2],}\n```\n', tmp_path)
    with pytest.raises(ValueError):
        await run("<!-- test: parse -->\n```toml\nkey = \n```\n", tmp_path)


async def test_pip_lines_must_name_real_extras(tmp_path: Path) -> None:
    ok = "<!-- test: pip -->\n```bash\n"
    ok += "pip install 'aioapollo-client[fastapi]' uvicorn  # a note\n```\n"
    await run(ok, tmp_path)
    with pytest.raises(AssertionError, match="no extra 'fastpi'"):
        await run(
            "<!-- test: pip -->\n```bash\npip install 'aioapollo-client[fastpi]'\n```\n", tmp_path
        )
    with pytest.raises(AssertionError, match="not a pip install"):
        await run("<!-- test: pip -->\n```bash\nuvicorn app:app\n```\n", tmp_path)
    await run("<!-- test: pip -->\n```bash\npip install . '.[yaml]'\n```\n", tmp_path)


async def test_pip_lines_never_name_the_other_projects_aioapollo(tmp_path: Path) -> None:
    # "aioapollo" on PyPI is an unrelated project: installing it by that name is a mistake.
    for line in (
        "pip install 'aioapollo[fastapi]'",
        "pip install aioapollo",
        "pip install AioApollo",
    ):
        with pytest.raises(AssertionError, match="another project"):
            await run(f"<!-- test: pip -->\n```bash\n{line}\n```\n", tmp_path)


async def test_a_signature_must_match_the_real_one(tmp_path: Path) -> None:
    marker = "<!-- test: signature: aioapollo.testing.ApolloTestServer -->"
    real = "ApolloTestServer(*, host='127.0.0.1', port=0, hold_seconds=60.0, store=None,\n"
    real += "    incremental_sync=False, time_tolerance_seconds=60.0, clock=None,\n"
    real += "    config_services=None, max_requests=None, state_file=None, control_token=None)\n"
    await run(f"{marker}\n```python\n{real}```\n", tmp_path)
    wrong = real.replace("hold_seconds=60.0", "hold_seconds=30.0")
    with pytest.raises(AssertionError, match="differs from the real one"):
        await run(f"{marker}\n```python\n{wrong}```\n", tmp_path)


async def test_a_fragment_must_compile_and_import(tmp_path: Path) -> None:
    marker = "<!-- test: fragment: cfg is a client -->"
    code = "from aioapollo import ApolloClient\n\ncfg.get('k')\n"
    await run(f"{marker}\n```python\n{code}```\n", tmp_path)
    with pytest.raises(ImportError):
        await run(f"{marker}\n```python\nfrom aioapollo import ApolloKlient\n```\n", tmp_path)
    with pytest.raises(SyntaxError):
        await run(f"{marker}\n```python\nasync with cfg:\n    pass\n```\n", tmp_path)
    with pytest.raises(AssertionError, match="bash -n"):
        await run(f"{marker}\n```bash\nif true; then echo\n```\n", tmp_path)

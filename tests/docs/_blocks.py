"""The fenced code blocks of README.md and docs/*.md, and the marker saying how each is tested.

Every block carries a marker: an HTML comment (invisible once rendered) as the last thing
before its opening fence::

    <!-- test: KIND -->
    <!-- test: KIND: DETAIL -->
    <!-- test: KIND: DETAIL
    expect: a line of output that must appear
    -->

``KIND`` says what the suite does with the block (see :data:`KINDS`); ``DETAIL`` is the
argument the kind takes (a file name, a request path, a reason); the lines after the first
are ``key: value`` options. A block without a marker fails the suite with a message that
says how to mark it, so a new example is never silently left untested.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PYTHON = frozenset({"python"})
SHELL = frozenset({"bash", "sh"})
CONSOLE = frozenset({"console"})  # commands after "$ " prompts, with their output
DATA = frozenset({"json", "yaml", "toml", "ini"})


@dataclass(frozen=True)
class Kind:
    """What the suite does with a block of this kind."""

    does: str
    langs: frozenset[str]
    detail: str = ""  # what DETAIL is; empty: the kind takes none
    options: frozenset[str] = frozenset()


#: Every kind of marker. The order is the order of the help text.
KINDS: dict[str, Kind] = {
    "program": Kind(
        "run as a complete program in a fresh interpreter (python -X dev: asyncio debug "
        "mode) in an empty directory, with a short-hold test server standing in for "
        "Apollo; it must exit 0 and write no traceback or warning. Option: `expect: TEXT` "
        "(a line of stdout)",
        PYTHON,
        options=frozenset({"expect"}),
    ),
    "app": Kind(
        "a module defining `app` (ASGI or WSGI), started as a server would start it "
        "(lifespan included) against the same test server; a GET of PATH must answer 200. "
        "Option: `expect: TEXT` (in the answer)",
        PYTHON,
        detail="PATH",
        options=frozenset({"expect"}),
    ),
    "file": Kind(
        "saved as NAME for a later `pytest` block of the same page (compiled or parsed here)",
        PYTHON | DATA,
        detail="NAME",
    ),
    "pytest": Kind(
        "saved as NAME next to the page's earlier `file` blocks; `pytest NAME` must pass "
        "(with -W error and asyncio debug mode)",
        PYTHON,
        detail="NAME",
    ),
    "shell": Kind(
        "run by bash in an empty directory, stopping at the first failing command; port 8080 "
        "is replaced by a free one. Options: `with: test server` (a test server, with "
        "APP_ID and APOLLO_CONFIG_SERVICE exported), `expect: TEXT` (a line of stdout)",
        SHELL,
        options=frozenset({"expect", "with"}),
    ),
    "parse": Kind("parsed by the parser of its language (ini: interpolation off)", DATA),
    "pip": Kind(
        "`pip install` lines: every extra named exists in pyproject.toml, and what the "
        "line installs is installed in the test environment",
        SHELL | CONSOLE,
    ),
    "signature": Kind(
        "a call signature, compared with inspect.signature of the object NAME",
        PYTHON,
        detail="NAME (dotted)",
    ),
    "fragment": Kind(
        "not complete on its own: python is compiled and its import statements are run, "
        "shell and console commands are syntax-checked (bash -n)",
        PYTHON | SHELL | CONSOLE,
        detail="REASON",
    ),
    "text": Kind(
        "not code: output, a diagram, a template or pseudo-code",
        frozenset({"text"}),
        detail="REASON",
    ),
}


def howto() -> str:
    """The marker syntax and every kind, for failure messages."""
    lines = [
        "Put an HTML comment on the line before the opening fence to say how the test suite",
        "exercises the block (tests/docs/), e.g.",
        "    <!-- test: program -->",
        "    <!-- test: fragment: WHY it cannot run on its own -->",
        "    <!-- test: shell",
        "    expect: a line the commands print",
        "    -->",
        "Kinds, with the fences each may go on:",
    ]
    for name, kind in KINDS.items():
        head = f"{name}: {kind.detail}" if kind.detail else name
        lines.append(f"  {head}  (```{', ```'.join(sorted(kind.langs))})")
        lines += textwrap.wrap(kind.does, 92, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)


@dataclass(frozen=True)
class Block:
    """One fenced block of a page, with its marker (or the reason it has no valid one)."""

    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    kind: str = ""
    detail: str = ""
    options: tuple[tuple[str, str], ...] = ()
    error: str = ""  # set when the block is unmarked or its marker is wrong

    @property
    def where(self) -> str:
        try:
            page = self.page.relative_to(ROOT).as_posix()
        except ValueError:
            page = self.page.name
        return f"{page}:{self.line}"

    def option(self, key: str) -> list[str]:
        return [value for k, value in self.options if k == key]


_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)[^`]*$")
_MARKER = re.compile(r"<!--\s*test:(?P<body>.*?)-->", re.S)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def parse(page: Path, text: str | None = None) -> list[Block]:
    """Every fenced block of ``page`` (``text``: its content, read from disk if None)."""
    lines = (page.read_text("utf-8") if text is None else text).splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence, lang = opening["indent"], opening["fence"], opening["info"].lower()
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        end = i + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        body = [
            line[len(indent) :] if line.startswith(indent) else line.lstrip()
            for line in lines[i + 1 : end]
        ]
        code = "\n".join(body) + "\n"
        block = Block(page, i + 1, lang, code)
        if end == len(lines):
            blocks.append(_failed(block, "the fence is never closed"))
            break
        blocks.append(_marked(block, _marker_before(lines, i)))
        i = end + 1
    return blocks


def all_blocks() -> list[Block]:
    return [block for page in pages() for block in parse(page)]


def _marker_before(lines: list[str], fence: int) -> str | None:
    """The body of the ``<!-- test: ... -->`` comment that is the last thing before the fence."""
    last = fence - 1
    while last >= 0 and not lines[last].strip():
        last -= 1
    if last < 0 or not lines[last].rstrip().endswith("-->"):
        return None
    first = last
    while first > 0 and "<!--" not in lines[first]:
        first -= 1
    found = _MARKER.search("\n".join(lines[first : last + 1]))
    return None if found is None else found["body"]


def _failed(block: Block, problem: str) -> Block:
    message = f"{block.where}: {problem}.\n{howto()}"
    return Block(block.page, block.line, block.lang, block.code, error=message)


def _marked(block: Block, marker: str | None) -> Block:
    fence = f"```{block.lang}"
    if not block.lang:
        return _failed(
            block,
            "this ``` block names no language: say what it is (```text for "
            "output, diagrams and pseudo-code)",
        )
    if marker is None:
        return _failed(block, f"this {fence} block has no `<!-- test: ... -->` marker")
    head, *rest = marker.strip().splitlines() or [""]
    name, _, detail = head.partition(":")
    name, detail = name.strip(), detail.strip()
    kind = KINDS.get(name)
    if kind is None:
        return _failed(block, f"unknown marker kind {name!r}")
    if block.lang not in kind.langs:
        allowed = ", ".join(sorted(kind.langs))
        return _failed(block, f"a `{name}` marker cannot go on a {fence} block (only {allowed})")
    if kind.detail and not detail:
        return _failed(block, f"a `{name}` marker needs its {kind.detail}: `{name}: {kind.detail}`")
    if detail and not kind.detail:
        return _failed(block, f"a `{name}` marker takes nothing after the kind, got {detail!r}")
    options: list[tuple[str, str]] = []
    for line in rest:
        key, sep, value = line.strip().partition(":")
        if not sep or key.strip() not in kind.options:
            known = ", ".join(sorted(kind.options)) or "none"
            return _failed(
                block,
                f"marker option {line.strip()!r} is not one of `{name}`'s "
                f"(`key: value` lines; {name} takes: {known})",
            )
        options.append((key.strip(), value.strip()))
    if name == "shell" and any(v != "test server" for k, v in options if k == "with"):
        return _failed(block, "the only `with:` a shell block takes is `with: test server`")
    return Block(block.page, block.line, block.lang, block.code, name, detail, tuple(options))

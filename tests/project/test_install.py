"""Installing by name: the wheel's metadata matches what the README tells users to install.

``aioapollo`` on PyPI is an unrelated project; this one is published as ``aioapollo-client``
and imported as ``aioapollo``. The wheel is built here, offline (no build isolation: the
build backend is in the test extra), and read back.
"""

from __future__ import annotations

import configparser
import email.message
import email.parser
import importlib
import os
import re
import shlex
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.docs._blocks import parse

ROOT = Path(__file__).resolve().parents[2]
NAME = "aioapollo-client"
#: The other project's name on PyPI: nothing here may ask pip for it.
TAKEN = "aioapollo"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    pytest.importorskip("hatchling", reason="the build backend is in the test extra")
    built = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("--no-index", "--wheel-dir", str(out), str(ROOT)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = out.glob("*.whl")
    return zipfile.ZipFile(path)


def metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.parser.Parser().parsestr(wheel.read(name).decode("utf-8"))


def install_lines() -> list[str]:
    """The ``pip install`` commands of the README's Install section."""
    readme = ROOT / "README.md"
    text = readme.read_text("utf-8")
    start = text.index("\n## Install\n")
    end = text.index("\n## ", start + 1)
    first, last = text.count("\n", 0, start) + 1, text.count("\n", 0, end) + 1
    lines = [
        line.strip()
        for block in parse(readme)
        if block.kind == "pip" and first <= block.line <= last
        for line in block.code.splitlines()
        if line.strip()
    ]
    assert lines, "the README's Install section has no `pip` block"
    return lines


def test_the_wheel_is_named_aioapollo_client_and_installs_the_aioapollo_package(
    wheel: zipfile.ZipFile,
) -> None:
    meta = metadata(wheel)
    assert meta["Name"] == NAME
    names = wheel.namelist()
    assert "aioapollo/__init__.py" in names and "aioapollo/py.typed" in names
    dist_info = f"{NAME.replace('-', '_')}-{meta['Version']}.dist-info"
    assert {n.split("/")[0] for n in names} == {"aioapollo", dist_info}
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    groups = configparser.ConfigParser(delimiters=("=",))
    groups.read_string(wheel.read(entry_points).decode("utf-8"))
    command = groups["console_scripts"]["aioapollo"]  # the `aioapollo` command
    module, _, function = command.partition(":")
    assert callable(getattr(importlib.import_module(module), function))
    assert groups["pytest11"]["aioapollo"] == "aioapollo.testing._plugin"  # the fixtures


def test_no_requirement_of_the_wheel_is_the_other_aioapollo(wheel: zipfile.ZipFile) -> None:
    # A self-reference such as "aioapollo[test,peers]" in an extra would pull the other project.
    requires = metadata(wheel).get_all("Requires-Dist") or []
    assert requires
    assert [r for r in requires if canonicalize_name(Requirement(r).name) == TAKEN] == []


def test_the_readme_install_lines_match_the_wheel(wheel: zipfile.ZipFile) -> None:
    meta = metadata(wheel)
    extras = set(meta.get_all("Provides-Extra") or [])
    by_name = from_checkout = 0
    for line in install_lines():
        words = shlex.split(line, comments=True)
        assert words[:2] == ["pip", "install"], line
        for word in (w for w in words[2:] if not w.startswith("-")):
            if word == "." or word.startswith(".["):
                from_checkout += 1
                wanted = Requirement("x" + word[1:]).extras
            else:
                requirement = Requirement(word)
                if canonicalize_name(requirement.name) != canonicalize_name(meta["Name"]):
                    assert canonicalize_name(requirement.name) != TAKEN, line
                    continue  # something else the app needs, such as uvicorn
                by_name += 1
                wanted = requirement.extras
            assert wanted <= extras, f"{line!r}: the wheel has no extra {wanted - extras}"
    assert by_name and from_checkout, "the Install section installs by name and from a checkout"


def test_the_readme_documents_every_user_extra(wheel: zipfile.ZipFile) -> None:
    # The project's own extras (its tests, benchmarks, development) are not for users.
    own = {"test", "peers", "bench", "dev"}
    extras = set(metadata(wheel).get_all("Provides-Extra") or []) - own
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme[readme.index("\n## Install\n") : readme.index("\n## Using it\n")]
    assert {e for e in extras if f"| `{e}` |" not in section} == set()


SCANNED = ["README.md", "aioapollo", "docs", "examples", "scripts", "bench"]


def test_no_install_hint_names_the_other_aioapollo() -> None:
    # `pip install 'aioapollo[x]'` / `aioapollo[x]` would send users to the other project;
    # only a line that says it is the unrelated project may name it.
    old = re.compile(r"(?<![\w.-])aioapollo\[|pip install (?:-\S+ )*['\"]?aioapollo(?![\w.-])")
    found = []
    for top in SCANNED:
        paths = [ROOT / top] if (ROOT / top).is_file() else sorted((ROOT / top).rglob("*"))
        for path in paths:
            rel = path.relative_to(ROOT).as_posix()
            if path.suffix not in (".py", ".md", ".sh", ".toml"):
                continue
            for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
                if old.search(line) and "unrelated" not in line:
                    found.append(f"{rel}:{number}: {line.strip()}")
    assert found == []


def test_the_env_script_says_what_it_installs_before_the_silent_install(tmp_path: Path) -> None:
    # scripts/demo.sh and test.sh install quietly for a minute or two on first use.
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "calls"
    fake = venv / "bin" / "python"  # records what it is asked to do, installs nothing
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {shlex.quote(str(log))}\n'
        'case "$*" in -V) echo "Python 3.11.0" ;; "-m pip show"*) exit 1 ;; esac\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "CI")}
    env["VENV"] = str(venv)
    done = subprocess.run(
        ["bash", "-c", 'source scripts/_env.sh && echo "calls: $(wc -l < "$VENV/../calls")" >&2'],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    said = done.stderr.splitlines()
    assert said[0].startswith(f"Setting up {venv}: installing aioapollo-client"), said
    assert "about 1-2 minutes" in said[0]
    assert said[1].startswith(f"Set up {venv} in "), said
    assert any(
        c.startswith("-m pip install --quiet -e .[dev]") for c in log.read_text().split("\n")
    )

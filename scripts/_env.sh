# Sourced by the other scripts: create a venv and install the project with its test tools,
# once per change of pyproject.toml. Needs only Python >= 3.11 (and a C compiler for uWSGI).
#   PYTHON  the interpreter to build the venv with (default: python3); a venv that another
#           Python version made is made again
#   VENV    the venv's directory (default: .venv); scripts/test.sh gives each Python its own
# Under CI=true a failed uWSGI build is an error; elsewhere the uWSGI tests skip instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
if [ -n "${PYTHON:-}" ] && [ -x "$VENV/bin/python" ]; then
    minor='import sys; print("%d.%d" % sys.version_info[:2])'
    if [ "$("$VENV/bin/python" -c "$minor")" != "$("$PYTHON" -c "$minor")" ]; then
        echo "$VENV was made by another Python than $PYTHON: making it again" >&2
        rm -rf "$VENV"
    fi
fi
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" || exit 1
fi
stamp="$VENV/.aioapollo-installed"
want="$(cat pyproject.toml scripts/_env.sh | sha256sum | cut -d' ' -f1) $("$VENV/bin/python" -V)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    # pip runs quietly: say what the next minute or two of silence is.
    began=$SECONDS
    echo "Setting up $VENV: installing aioapollo-client with its test tools and servers" \
        "(first run, or pyproject.toml changed; about 1-2 minutes, uWSGI builds from source)..." >&2
    # Explicit checks: `set -e` does not apply when this file is sourced inside a `&&` list.
    "$VENV/bin/python" -m pip install --quiet --upgrade pip || exit 1
    # The project was once installed under the name "aioapollo" (another project's on PyPI):
    # drop that record, so only aioapollo-client owns the aioapollo package here.
    if "$VENV/bin/python" -m pip show --quiet aioapollo >/dev/null 2>&1; then
        "$VENV/bin/python" -m pip uninstall --quiet --yes aioapollo || exit 1
    fi
    if ! "$VENV/bin/python" -m pip install --quiet -e ".[dev]"; then
        if [ "${CI:-}" = "true" ]; then
            echo "error: installing .[dev] into $VENV failed; CI does not run without uWSGI" >&2
            exit 1
        fi
        # Most likely uWSGI, which builds from source: install everything else, so only the
        # uWSGI tests skip (they say why).
        echo "warning: installing .[dev] failed (uWSGI needs a C compiler and the Python" \
            "headers, e.g. apt-get install gcc python3-dev); retrying without uWSGI" >&2
        "$VENV/bin/python" -m pip install --quiet -e . || exit 1
        "$VENV/bin/python" - <<'PY' > "$VENV/.deps-without-uwsgi" || exit 1
import re, tomllib
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]
for group in ("test", "peers", "dev"):
    for req in extras[group]:
        if not re.match(r"(?i)(uwsgi|aioapollo-client)\b", req):
            print(req)
PY
        "$VENV/bin/python" -m pip install --quiet -r "$VENV/.deps-without-uwsgi" || exit 1
    fi
    echo "$want" > "$stamp"
    echo "Set up $VENV in $((SECONDS - began)) s." >&2
fi
export PATH="$VENV/bin:$PATH"

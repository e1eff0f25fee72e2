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
    # Explicit checks: `set -e` does not apply when this file is sourced inside a `&&` list.
    "$VENV/bin/python" -m pip install --quiet --upgrade pip || exit 1
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
        if not re.match(r"(?i)(uwsgi|aioapollo)\b", req):
            print(req)
PY
        "$VENV/bin/python" -m pip install --quiet -r "$VENV/.deps-without-uwsgi" || exit 1
    fi
    echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"

# Sourced by the other scripts: create .venv and install the project with its test tools,
# once per change of pyproject.toml. Needs only Python >= 3.11 (and a C compiler for uWSGI).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.aioapollo-installed
want="$(cat pyproject.toml scripts/_env.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    # Explicit checks: `set -e` does not apply when this file is sourced inside a `&&` list.
    .venv/bin/python -m pip install --quiet --upgrade pip || exit 1
    if ! .venv/bin/python -m pip install --quiet -e ".[dev]"; then
        # Most likely uWSGI, which builds from source: install everything else, so only the
        # uWSGI tests skip (they say why).
        echo "warning: installing .[dev] failed (uWSGI needs a C compiler and the Python" \
            "headers, e.g. apt-get install gcc python3-dev); retrying without uWSGI" >&2
        .venv/bin/python -m pip install --quiet -e . || exit 1
        .venv/bin/python - <<'PY' > .venv/.deps-without-uwsgi || exit 1
import re, tomllib
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]
for group in ("test", "peers", "dev"):
    for req in extras[group]:
        if not re.match(r"(?i)(uwsgi|aioapollo)\b", req):
            print(req)
PY
        .venv/bin/python -m pip install --quiet -r .venv/.deps-without-uwsgi || exit 1
    fi
    echo "$want" > "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"

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
    .venv/bin/python -m pip install --quiet -e ".[dev]" || exit 1
    echo "$want" > "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"

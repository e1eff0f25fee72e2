#!/usr/bin/env bash
# Run every check CI runs, each Python in its own venv (made by scripts/_env.sh on first use):
#   3.11, the oldest Python we claim   .venv       ruff, mypy, the whole suite
#   3.13, the newest                   .venv-3.13  ruff, mypy, the whole suite
#   3.12                               .venv-3.12  the forked-worker and real-server tests
#                                                  (markers `workers` and `servers`)
# Interpreters are found as pythonX.Y on PATH or under pyenv. One that is missing fails the
# run under CI=true; elsewhere that Python is skipped with a message.
#
# With arguments, runs ruff, mypy and `pytest ARGS` on one Python only: 3.11, or the one
# TEST_PYTHON names (e.g. TEST_PYTHON=3.13 ./scripts/test.sh tests/test_fork.py).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_python.sh

results=()
failed=0

# leg VERSION VENV ROLE [pytest args]: one Python's checks, timed, in a child process.
leg() {
    local version=$1 venv=$2 role=$3 python started status
    shift 3
    if ! python=$(find_python "$version"); then
        if [ "${CI:-}" = "true" ]; then
            echo "error: no CPython $version found (pythonX.Y on PATH or under pyenv)" >&2
            results+=("$version: FAILED, no interpreter")
            failed=1
        else
            echo "warning: skipping Python $version: no interpreter found" \
                "(pythonX.Y on PATH or under pyenv; e.g. pyenv install $version)" >&2
            results+=("$version: skipped, no interpreter")
        fi
        return
    fi
    echo "== Python $version ($python), $venv: $role" >&2
    started=$SECONDS
    status=0
    PYTHON="$python" VENV="$venv" bash scripts/_check.sh "$role" "$@" || status=$?
    if [ "$status" -eq 0 ]; then
        results+=("$version: passed ($role) in $((SECONDS - started)) s")
    else
        results+=("$version: FAILED ($role, exit $status) after $((SECONDS - started)) s")
        failed=1
    fi
}

if [ $# -gt 0 ]; then
    version=${TEST_PYTHON:-3.11}
    venv=.venv
    [ "$version" = 3.11 ] || venv=.venv-$version
    leg "$version" "$venv" full "$@"
else
    leg 3.11 .venv full
    leg 3.13 .venv-3.13 full
    leg 3.12 .venv-3.12 workers
fi
printf '== %s\n' "${results[@]}" >&2
exit "$failed"

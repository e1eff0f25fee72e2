#!/usr/bin/env bash
# Run every check CI runs, each Python in its own venv (made by scripts/_env.sh on first use):
#   3.11, the oldest Python we claim   .venv       ruff, mypy, the whole suite
#   3.13, the newest                   .venv-3.13  ruff, mypy, the whole suite
#   3.12                               .venv-3.12  the forked-worker and real-server tests
#                                                  (markers `workers` and `servers`)
# Interpreters are found as pythonX.Y on PATH or under pyenv. One that is missing fails the
# run under CI=true; elsewhere that Python is skipped with a message (and if neither 3.11 nor
# 3.13 is there, the full checks run on python3 in .venv instead).
#
# With arguments, runs ruff, mypy and `pytest ARGS` on one Python only: 3.11, or the one
# TEST_PYTHON names (e.g. TEST_PYTHON=3.13 ./scripts/test.sh tests/test_fork.py); that one
# must exist.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_python.sh

results=()
failed=0
full_ran=false

# run LABEL PYTHON VENV ROLE [pytest args]: one Python's checks, timed, in a child process.
run() {
    local label=$1 python=$2 venv=$3 role=$4 started status=0
    shift 4
    echo "== Python $label ($python), $venv: $role" >&2
    [ "$role" = full ] && full_ran=true
    started=$SECONDS
    PYTHON="$python" VENV="$venv" bash scripts/_check.sh "$role" "$@" || status=$?
    if [ "$status" -eq 0 ]; then
        results+=("$label: passed ($role) in $((SECONDS - started)) s")
    else
        results+=("$label: FAILED ($role, exit $status) after $((SECONDS - started)) s")
        failed=1
    fi
}

# leg VERSION VENV ROLE [pytest args]: `run` on CPython VERSION. Without it: an error under
# CI=true or with required=true, else a skip.
leg() {
    local version=$1 python
    if python=$(find_python "$version"); then
        run "$version" "$python" "${@:2}"
    elif [ "${CI:-}" = "true" ] || [ "${required:-}" = "true" ]; then
        echo "error: no CPython $version found (python$version on PATH or under pyenv)" >&2
        results+=("$version: FAILED, no interpreter")
        failed=1
    else
        echo "warning: skipping Python $version: no interpreter found (python$version on" \
            "PATH or under pyenv; e.g. pyenv install $version)" >&2
        results+=("$version: skipped, no interpreter")
    fi
}

if [ $# -gt 0 ]; then
    version=${TEST_PYTHON:-3.11}
    venv=.venv
    [ "$version" = 3.11 ] || venv=.venv-$version
    required=true leg "$version" "$venv" full "$@"
else
    leg 3.11 .venv full
    leg 3.13 .venv-3.13 full
    leg 3.12 .venv-3.12 workers
    if [ "$full_ran" = false ] && [ "${CI:-}" != "true" ]; then
        if python=$(command -v python3); then
            run "python3" "$python" .venv full
        else
            results+=("python3: FAILED, no interpreter at all")
            failed=1
        fi
    fi
fi
printf '== %s\n' "${results[@]}" >&2
exit "$failed"

#!/usr/bin/env bash
# Run every check CI runs, each Python in its own venv (made by scripts/_env.sh on first use):
#   3.11, the oldest Python we claim   .venv       ruff, mypy, the whole suite
#   3.13, the newest                   .venv-3.13  mypy, every test but the forked-worker and
#                                                  real-server ones
#   3.12                               .venv-3.12  the forked-worker and real-server tests
#                                                  (markers `workers` and `servers`)
# 3.11 runs first (alone: it also builds the first venv and lints); 3.13 and 3.12 then run
# side by side, and between them run every test once more (CI stays within its 12 minutes).
# Interpreters are found as pythonX.Y on PATH or under pyenv. One that is missing fails the
# run under CI=true; elsewhere that Python is skipped with a message (and if neither 3.11 nor
# 3.13 is there, the full checks run on python3 in .venv instead).
#
# With arguments, runs ruff, mypy and `pytest ARGS` on one Python only: 3.11, or the one
# TEST_PYTHON names (e.g. TEST_PYTHON=3.13 ./scripts/test.sh tests/runtime/test_fork.py); that one
# must exist.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_python.sh

results=()
failed=0
full_ran=false

# Legs started with `background` run beside each other (their output is shown when they end):
# the suite mostly waits on sockets and child processes, so two legs at once take little more
# than one, and CI stays within its time.
pids=()
logs=()
labels=()
background() {
    local log
    log=$(mktemp)
    run "$@" >"$log" 2>&1 &
    pids+=("$!")
    logs+=("$log")
    labels+=("$1")
}

# wait_all: wait for the background legs; show each one's output and collect its result.
wait_all() {
    local i status line
    for i in "${!pids[@]}"; do
        status=0
        wait "${pids[$i]}" || status=$?
        echo "== output of the Python ${labels[$i]} leg" >&2
        grep -v '^RESULT ' "${logs[$i]}" >&2 || true
        while IFS= read -r line; do
            results+=("${line#RESULT }")
        done < <(grep '^RESULT ' "${logs[$i]}" || true)
        [ "$status" -eq 0 ] || failed=1
        rm -f "${logs[$i]}"
    done
    pids=()
    logs=()
    labels=()
}

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
    if [ "${in_background:-}" = true ]; then  # for wait_all, which runs in the parent
        echo "RESULT ${results[-1]}"
        return "$status"
    fi
}

# leg VERSION VENV ROLE [pytest args]: `run` on CPython VERSION (beside the others when
# in_background=true). Without it: an error under CI=true or with required=true, else a skip.
leg() {
    local version=$1 python
    if python=$(find_python "$version"); then
        if [ "${in_background:-}" = true ]; then
            [ "$3" = full ] && full_ran=true
            background "$version" "$python" "${@:2}"
        else
            run "$version" "$python" "${@:2}"
        fi
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
    in_background=true leg 3.13 .venv-3.13 unit
    in_background=true leg 3.12 .venv-3.12 workers
    wait_all
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

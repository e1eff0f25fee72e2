#!/usr/bin/env bash
# One Python's share of scripts/test.sh, in the venv that PYTHON and VENV name (scripts/_env.sh
# makes it on first use):
#   _check.sh full [pytest args]     ruff, mypy for this Python's version, pytest
#   _check.sh unit [pytest args]     mypy for this Python's version, every test but those of
#                                    forked workers and real servers
#   _check.sh workers [pytest args]  only the tests of forked workers and real servers
source "$(dirname "$0")/_env.sh"
role=$1
shift
case "$role" in
    full)
        ruff check .
        ruff format --check .
        mypy --python-version "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        python -m pytest "$@"
        ;;
    unit)
        mypy --python-version "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        python -m pytest -m "not (workers or servers)" "$@"
        ;;
    workers)
        python -m pytest -m "workers or servers" "$@"
        ;;
    *)
        echo "usage: $0 full|unit|workers [pytest args]" >&2
        exit 2
        ;;
esac

# Sourced by scripts/test.sh. `find_python X.Y` prints the path of a working CPython X.Y and
# returns 0, or prints nothing and returns 1. It tries `pythonX.Y` on PATH first, then the
# newest X.Y.Z that pyenv has installed (pyenv's shim for a version that is installed but not
# selected does not run, so PATH alone misses it).
find_python() {
    local version=$1 candidate root
    local is_it="import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$version'.split('.'))))"
    if candidate=$(command -v "python$version") && "$candidate" -c "$is_it" 2>/dev/null; then
        # The interpreter itself, not a pyenv shim or the python of an active venv.
        "$candidate" -c 'import os, sys; print(os.path.realpath(sys.executable))'
        return 0
    fi
    root=${PYENV_ROOT:-}
    if [ -z "$root" ] && command -v pyenv >/dev/null 2>&1; then
        root=$(pyenv root)
    fi
    if [ -n "$root" ] && [ -d "$root/versions" ]; then
        while read -r candidate; do
            if [ -x "$candidate" ] && "$candidate" -c "$is_it" 2>/dev/null; then
                echo "$candidate"
                return 0
            fi
        done < <(printf '%s\n' "$root"/versions/"$version".*/bin/python"$version" | sort -V -r)
    fi
    return 1
}

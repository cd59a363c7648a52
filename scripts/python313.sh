#!/usr/bin/env bash
# Print the path of a working CPython 3.13 (what Blender 5.1 and newer embed), for the bpy 5.x venvs.
#
# In order: $PYTHON313 if set; a python3.13 on PATH; one installed by pyenv. The first that runs and has
# venv, ssl and sqlite3 is printed on stdout and noted on stderr, so a log always says which one ran.
# Exits 1 with a message saying what to do when none is found.
set -uo pipefail

usable() {  # a 3.13 interpreter with what venv + pip + the test suites need
  "$1" -c 'import sys, venv, ssl, sqlite3, ensurepip; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1
}

candidates=()
[ -n "${PYTHON313:-}" ] && candidates+=("$PYTHON313")
candidates+=("$(command -v python3.13 2>/dev/null || true)")
pyenv_root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
for found in "$pyenv_root"/versions/3.13*/bin/python3.13; do candidates+=("$found"); done

for python in "${candidates[@]}"; do
  if [ -n "$python" ] && [ -x "$python" ] && usable "$python"; then
    echo "Python 3.13: $python ($("$python" -c 'import sys; print(sys.version.split()[0])'))" >&2
    echo "$python"
    exit 0
  fi
done
echo "No usable Python 3.13 found (tried: ${candidates[*]:-nothing}). Install one (pyenv install 3.13," \
  "or your system's python3.13 and python3.13-venv packages) or set PYTHON313=/path/to/python3.13." >&2
exit 1

#!/usr/bin/env bash
# Run the Blender test suites (tests/blender, tests/packaging) against several bpy releases,
# each in its own throw-away virtualenv, and print a markdown table of what passed.
#
#   scripts/blender_matrix.sh                 # latest 4.2.x LTS and latest 5.0.x from PyPI
#   scripts/blender_matrix.sh 4.2.0 4.2.23    # exact bpy versions
#
# Environment: PYTHON (a CPython 3.11, default python3.11), MATRIX_DIR (venvs and logs,
# default /tmp/partcrafter-blender-matrix; venvs are reused),
# BPY_WHEEL_DIR (optional folder of pre-downloaded bpy wheels, ~370 MB each).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
MATRIX_DIR="${MATRIX_DIR:-/tmp/partcrafter-blender-matrix}"
SUITES=(tests/blender tests/packaging)
mkdir -p "$MATRIX_DIR"

latest_of() {  # latest bpy release whose version starts with $1 (e.g. "4.2.")
  "$PYTHON" -m pip index versions bpy 2>/dev/null \
    | sed -n 's/^Available versions: //p' | tr ',' '\n' | tr -d ' ' | grep "^${1//./\\.}" | head -n1
}

if [ "$#" -gt 0 ]; then
  VERSIONS=("$@")
else
  VERSIONS=("$(latest_of 4.2.)" "$(latest_of 5.0.)")
fi

# The project (with its dev extra) and the server package, editable, as in the CI environment.
PROJECT=(-e "$REPO[dev]")
[ -f "$REPO/server/pyproject.toml" ] && PROJECT+=(-e "$REPO/server")

FIND_LINKS=()
[ -n "${BPY_WHEEL_DIR:-}" ] && FIND_LINKS=(--find-links "$BPY_WHEEL_DIR")

ROWS=()
for v in "${VERSIONS[@]}"; do
  [ -n "$v" ] || { echo "could not find a bpy version on the index" >&2; exit 2; }
  venv="$MATRIX_DIR/bpy-$v"
  log="$MATRIX_DIR/bpy-$v.log"
  echo "== bpy $v (log: $log)"
  : > "$log"
  # Reuse the venv when there is one; pip only fills in what is missing (the project is editable).
  # numpy 1.26 is what Blender 4.2-5.0 ship, so tests see the numpy users have.
  if ! { { [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"; } \
      && "$venv/bin/python" -m pip install --quiet "${FIND_LINKS[@]}" "bpy==$v" "numpy==1.26.4" "${PROJECT[@]}"; } >>"$log" 2>&1; then
    ROWS+=("| $v | install failed (see $log) | - | - |")
    continue
  fi
  blender="$("$venv/bin/python" -c 'import bpy; print(bpy.app.version_string)' 2>>"$log")" || blender="import failed"
  cells=()
  for suite in "${SUITES[@]}"; do
    (cd "$REPO" && "$venv/bin/python" -m pytest -q -p no:cacheprovider "$suite") >>"$log" 2>&1
    rc=$?
    summary="$(grep -E '^(=+ )?[0-9]+ (passed|failed|errors?|skipped)|no tests ran' "$log" | tail -n1 | sed 's/=//g; s/^ *//; s/ *$//')"
    if [ "$rc" -eq 0 ]; then cells+=("pass ($summary)"); else cells+=("**FAIL** ($summary)"); fi
  done
  ROWS+=("| $v | $blender | ${cells[0]} | ${cells[1]} |")
done

{
  echo "| bpy | Blender | ${SUITES[0]} | ${SUITES[1]} |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${ROWS[@]}"
} | tee "$MATRIX_DIR/results.md"

#!/usr/bin/env bash
# Run the Blender test suites (every suite that imports bpy: tests/blender, tests/packaging) against
# several bpy releases, each in its own virtualenv on the Python that Blender release embeds, and print
# a markdown table of what passed. bpy 4.2-5.0 need Python 3.11; bpy 5.1 and newer need Python 3.13:
# scripts/python313.sh finds one on this machine, and where there is none, scripts/debian13.sh makes a
# Debian 13 root file system with it (debootstrap) and the rows run inside it (chroot).
#
#   scripts/blender_matrix.sh                   # the latest release of each line, 4.2 to 5.3
#   scripts/blender_matrix.sh 4.2.0 5.3.0       # exact bpy versions
#   scripts/blender_matrix.sh --doc ...         # also write the table into docs/blender-versions.md
#
# Environment: PYTHON (a CPython 3.11, default python3.11), PYTHON313 (a CPython 3.13, or "debian13" to
# use the Debian 13 root file system even when this machine has a Python 3.13), MATRIX_DIR (venvs and logs, default
# ~/.cache/partcrafter/blender-matrix; venvs are reused, so a second run installs nothing),
# BPY_WHEEL_DIR (optional folder of pre-downloaded bpy wheels, ~370 MB each).
# The local-engine tests run the engine in the project's .venv (Python 3.11, torch CPU), as a Blender 5.x
# user runs it in a separate interpreter: run `./dev setup` first (`./dev matrix` does).
# Exit status: 0 when every version passed every suite, 1 otherwise.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
MATRIX_DIR="${MATRIX_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/partcrafter/blender-matrix}"
SUITES=(tests/blender tests/packaging)
LINES=(4.2. 4.3. 4.4. 4.5. 5.0. 5.1. 5.2. 5.3.)
DOC="$REPO/docs/blender-versions.md"
mkdir -p "$MATRIX_DIR"

write_doc=0
if [ "${1:-}" = "--doc" ]; then write_doc=1; shift; fi

python_for() {  # "RUNNER|PYTHON" for a bpy version: Blender 5.1 and newer embed Python 3.13
  case "$1" in
    4.* | 5.0.*) echo "|$PYTHON" ;;
    *)
      local py
      if [ "${PYTHON313:-}" != "debian13" ] && py="$("$REPO/scripts/python313.sh")"; then
        echo "|$py"
      else
        echo "Python 3.13: a Debian 13 root file system (PYTHON313=debian13, or none on this machine)" >&2
        "$REPO/scripts/debian13.sh" ensure >/dev/null && echo "$REPO/scripts/debian13.sh run|/usr/bin/python3.13"
      fi
      ;;
  esac
}

latest_of() {  # latest bpy release whose version starts with $1 (e.g. "4.2."), as pip sees it from its Python
  local found run py
  found="$(python_for "${1}0")" || return 1
  run="${found%%|*}" py="${found#*|}"
  $run "$py" -m pip index versions bpy 2>/dev/null \
    | sed -n 's/^Available versions: //p' | tr ',' '\n' | tr -d ' ' | grep "^${1//./\\.}" | head -n1
}

if [ "$#" -gt 0 ]; then
  VERSIONS=("$@")
else
  VERSIONS=()
  for line in "${LINES[@]}"; do VERSIONS+=("$(latest_of "$line")"); done
fi

ENGINE_PYTHON="$REPO/.venv/bin/python"
[ -x "$ENGINE_PYTHON" ] || { echo "no $ENGINE_PYTHON: run ./dev setup first (the local-engine tests use it)" >&2; exit 2; }

FIND_LINKS=()
[ -n "${BPY_WHEEL_DIR:-}" ] && FIND_LINKS=(--find-links "$BPY_WHEEL_DIR")

ROWS=()
status=0
for v in "${VERSIONS[@]}"; do
  [ -n "$v" ] || { echo "could not find a bpy version on the index" >&2; exit 2; }
  log="$MATRIX_DIR/bpy-$v.log"
  echo "== bpy $v (log: $log)"
  : >"$log"
  if ! found="$(python_for "$v" 2>>"$log")"; then
    ROWS+=("| $v | - | no Python 3.13 (see $log) | - | - |")
    status=1
    continue
  fi
  # RUN is empty on this machine's own Python, or "scripts/debian13.sh run" (a chroot) for every command.
  read -r -a RUN <<<"${found%%|*}"
  py="${found#*|}"
  venv="$MATRIX_DIR/bpy-$v${RUN[0]:+-debian13}"
  # numpy 1.26 is what Blender 4.2-5.0 ship; for 5.1+ bpy's own requirement picks numpy 2.
  numpy=()
  case "$v" in 4.* | 5.0.*) numpy=("numpy==1.26.4") ;; esac
  # The local engine's bpy-free Python dependencies (not torch: the engine runs in $ENGINE_PYTHON).
  engine_deps=("safetensors>=0.4" "scikit-image>=0.22")
  # Reuse the venv when there is one and it was made for this checkout; pip then has nothing to do.
  stamp="$venv/.partcrafter-installed"
  want="$REPO $(cat "$REPO/pyproject.toml" "$REPO/server/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    if ! { { [ -e "$venv/bin/python" ] || "${RUN[@]}" "$py" -m venv "$venv"; } &&
      "${RUN[@]}" "$venv/bin/python" -m pip install --quiet "${FIND_LINKS[@]}" "bpy==$v" "${numpy[@]}" "${engine_deps[@]}" \
        -e "$REPO[dev]" -e "$REPO/server"; } >>"$log" 2>&1; then
      ROWS+=("| $v | - | install failed (see $log) | - | - |")
      status=1
      continue
    fi
    echo "$want" >"$stamp"
  fi
  info="$("${RUN[@]}" "$venv/bin/python" -c 'import sys, bpy; print(bpy.app.version_string, "|", sys.version.split()[0])' 2>>"$log" | tail -n1)" ||
    info="import failed | -"
  cells=()
  for suite in "${SUITES[@]}"; do
    (cd "$REPO" && PARTCRAFTER_TEST_ENGINE_PYTHON="$ENGINE_PYTHON" \
      "${RUN[@]}" "$venv/bin/python" -m pytest -q -p no:cacheprovider "$suite") >>"$log" 2>&1
    rc=$?
    summary="$(grep -E '^(=+ )?[0-9]+ (passed|failed|errors?|skipped)|no tests ran' "$log" | tail -n1 | sed 's/=//g; s/ in [0-9.]*s.*$//; s/^ *//; s/ *$//')"
    if [ "$rc" -eq 0 ]; then cells+=("pass ($summary)"); else cells+=("**FAIL** ($summary)"); status=1; fi
  done
  ROWS+=("| $v | $info | ${cells[0]} | ${cells[1]} |")
done

table="$({
  echo "| bpy | Blender | Python | ${SUITES[0]} | ${SUITES[1]} |"
  echo "| --- | --- | --- | --- | --- |"
  printf '%s\n' "${ROWS[@]}"
})"
echo "$table" | tee "$MATRIX_DIR/results.md"

if [ "$write_doc" -eq 1 ]; then
  # One row per bpy version in the page's table; this run's rows replace theirs.
  "$PYTHON" "$REPO/scripts/matrix_doc.py" "$DOC" "$MATRIX_DIR/results.md" "$(date -u +%Y-%m-%d)"
fi
exit "$status"

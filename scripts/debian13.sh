#!/usr/bin/env bash
# A Debian 13 root file system with Python 3.13 (what Blender 5.1+ embeds) and the X11/GL libraries that
# bpy loads, for machines that have no Python 3.13 of their own. Made from Debian's packages with
# debootstrap (about a minute), once; later calls reuse it.
#
#   scripts/debian13.sh ensure            make the root file system if it is not there yet; print its path
#   scripts/debian13.sh run CMD [ARG...]  run CMD inside it (chroot), in the current directory
#
# `run` works in a private mount namespace (unshare), so nothing stays mounted afterwards. It binds
# /proc, /dev, /tmp and the folders a test run needs at the same paths as outside: the checkout's
# parent (the checkout and ../shared), the matrix venvs, and pyenv's interpreters (the 3.11 engine venv
# links to one). Needs root, debootstrap, unshare and chroot (all in Debian's packages).
# Environment: DEBIAN13_ROOT (default ~/.cache/partcrafter/debian13), DEBIAN_MIRROR (default: the
# first Debian mirror in this machine's apt sources).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/partcrafter"
ROOT="${DEBIAN13_ROOT:-$CACHE/debian13}"
STAMP="$ROOT/.partcrafter-ready"
PACKAGES=(python3.13 python3.13-venv ca-certificates
  libx11-6 libxrender1 libxxf86vm1 libxfixes3 libxi6 libxkbcommon0 libsm6 libgl1 libegl1 libxext6 libgomp1)

mirror() {  # the Debian mirror this machine's apt already uses
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri="$(grep -hoE '^(URIs:|deb) +[a-z]+://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    head -n1 | awk '{print $2}')"
  [ -n "$uri" ] || { echo "no Debian mirror in /etc/apt sources; set DEBIAN_MIRROR" >&2; exit 1; }
  echo "$uri"
}

ensure() {
  if [ -f "$STAMP" ]; then echo "$ROOT"; return; fi
  command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; } >&2
  echo "Making a Debian 13 root file system with Python 3.13 in $ROOT (about a minute) ..." >&2
  rm -rf "$ROOT"
  mkdir -p "$ROOT"
  local include
  include="$(IFS=,; echo "${PACKAGES[*]}")"
  debootstrap --variant=minbase --include="$include" trixie "$ROOT" "$(mirror)" >"$ROOT.log" 2>&1 ||
    { tail -n 20 "$ROOT.log" >&2; echo "debootstrap failed; the whole log is $ROOT.log" >&2; exit 1; }
  touch "$STAMP"
  echo "$ROOT"
}

run() {
  ensure >/dev/null
  # pip inside reaches the registry as this machine does: its name servers and its CA bundle (which may
  # hold a local CA that Debian's bundle lacks).
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
  cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt" 2>/dev/null || true
  local binds=(/proc /dev /tmp "$(dirname "$REPO")" "$CACHE")
  local pyenv_root
  pyenv_root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
  [ -d "$pyenv_root" ] && binds+=("$pyenv_root")
  exec unshare --mount --propagation private bash -c '
    root=$1; cwd=$2; shift 2
    while [ "$1" != "--" ]; do
      mkdir -p "$root$1" && mount --rbind "$1" "$root$1"; shift
    done
    shift
    exec chroot "$root" /usr/bin/env -i HOME="$HOME" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
      TMPDIR="${TMPDIR:-/tmp}" PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
      PIP_DISABLE_PIP_VERSION_CHECK=1 ${PARTCRAFTER_TEST_ENGINE_PYTHON:+PARTCRAFTER_TEST_ENGINE_PYTHON=$PARTCRAFTER_TEST_ENGINE_PYTHON} \
      /bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$cwd" "$@"
  ' bash "$ROOT" "$PWD" "${binds[@]}" -- "$@"
}

case "${1:-}" in
  ensure) ensure ;;
  run) shift; run "$@" ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac

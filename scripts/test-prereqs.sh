#!/usr/bin/env bash
# What `make test` needs besides .venv: the golden reference data and the Debian packages listed
# in scripts/test-packages.txt. Without the reference the golden tests skip (a user's own clone),
# so this only says so, except under CI (CI=true), where its absence stops the run. Missing packages are installed when run as root (apt-get);
# otherwise this stops with the command that installs them. SAMURAI_SKIP_TEST_PACKAGES=1 goes on
# without them (the tests that need them are then skipped, or fail under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."

reference=${SAMURAI_REFERENCE:-../shared/reference}
if ! [ -d "$reference/golden" ] || ! [ -f "$reference/synth_weights.py" ]; then
  cat >&2 <<MSG
make test: the golden reference data is not at $reference
  the golden tests compare with it: put the shared folder next to the checkout
  (../shared/reference) or point SAMURAI_REFERENCE at the reference folder
MSG
  if [ "${CI:-}" = true ]; then
    echo "make test: CI=true requires the reference data" >&2
    exit 1
  fi
  echo "  going on: the golden tests will skip" >&2
fi

mapfile -t wanted < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' scripts/test-packages.txt | grep -v '^$' || true)
[ ${#wanted[@]} -eq 0 ] && exit 0
if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "make test: not a Debian system; the tests need the equivalents of: ${wanted[*]}" >&2
  exit 0
fi
missing=()
for pkg in "${wanted[@]}"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" != "installed" ]; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "${SAMURAI_SKIP_TEST_PACKAGES:-0}" = 1 ]; then
  echo "make test: going on without ${missing[*]} (SAMURAI_SKIP_TEST_PACKAGES=1)" >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  echo "make test: installing ${missing[*]} (scripts/test-packages.txt)" >&2
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    "${missing[@]}" >/dev/null
  exit 0
fi
cat >&2 <<MSG
make test: the tests need these Debian packages, which are not installed: ${missing[*]}
  install them with:  sudo apt-get install -y ${missing[*]}
  or run without them: SAMURAI_SKIP_TEST_PACKAGES=1 make test (the tests that need them skip)
MSG
exit 1

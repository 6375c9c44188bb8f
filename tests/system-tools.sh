#!/bin/sh
# What the suite needs from the system, provisioned before anything runs (`make test`, so `.ci/run`
# too, and `make bench`): Chromium for the console tests, systemd-analyze for the systemd units' checks,
# wrk for the benchmarks' send load.
# Usage: sh tests/system-tools.sh VENV_BIN
#   Chromium: nothing to do when CHROMIUM_PATH or `chromium` on the PATH gives one. On Debian,
#   `apt-get install chromium`; elsewhere (Ubuntu's `chromium` is a snap, which does not run headless
#   in containers or CI) Playwright's own build with its system libraries (`playwright install`).
#   systemd-analyze: `apt-get install systemd` where it is missing; wrk: `apt-get install wrk`.
#   apt runs as root or through passwordless sudo. Where neither works: one line with the exact
#   command, and a non-zero exit before any test runs.
set -eu
bin="${1:-.venv/bin}"

has_chromium() {
  if [ -n "${CHROMIUM_PATH:-}" ]; then
    [ -x "$CHROMIUM_PATH" ] && return 0
    echo "CHROMIUM_PATH=$CHROMIUM_PATH is not an executable: unset it or point it at Chromium" >&2
    exit 1
  fi
  command -v chromium >/dev/null 2>&1 && return 0
  # Playwright's own build, from an earlier run.
  "$bin/python" -c 'import os, sys
from playwright.sync_api import sync_playwright
with sync_playwright() as pw:
    sys.exit(0 if os.path.exists(pw.chromium.executable_path) else 1)' 2>/dev/null
}

if [ "$(id -u)" = 0 ]; then sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"
else sudo=none
fi
# shellcheck source=/dev/null
distro=$(. /etc/os-release 2>/dev/null && echo "${ID:-}") || distro=""

apt_packages=""
playwright=""
has_chromium || if [ "$distro" = debian ]; then apt_packages="chromium"; else playwright=1; fi
command -v systemd-analyze >/dev/null 2>&1 || apt_packages="$apt_packages systemd"
command -v wrk >/dev/null 2>&1 || apt_packages="$apt_packages wrk"
apt_packages="${apt_packages# }"

if [ "$sudo" = none ] && { [ -n "$apt_packages" ] || [ -n "$playwright" ]; }; then
  wanted=""
  [ -n "$apt_packages" ] && wanted="sudo apt-get install -y $apt_packages"
  [ -n "$playwright" ] && wanted="${wanted:+$wanted && }sudo $bin/playwright install-deps chromium && $bin/playwright install chromium"
  echo "The tests need system packages this user cannot install: run '$wanted', then make test again." >&2
  exit 1
fi

if [ -n "$apt_packages" ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "The tests need $apt_packages (not found, and this system has no apt-get): install them, then make test again." >&2
    exit 1
  fi
  echo "Installing $apt_packages for the tests (apt-get)..."
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $apt_packages >/dev/null
fi
if [ -n "$playwright" ]; then
  echo "Installing Playwright's Chromium and its system libraries for the console tests..."
  $sudo "$bin/playwright" install-deps chromium
  "$bin/playwright" install chromium
fi

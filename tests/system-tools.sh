#!/bin/sh
# The console tests' browser, provisioned before anything runs (`make test`, so `.ci/run` too).
# Usage: sh tests/browser.sh VENV_BIN
#   1. Chromium already there (CHROMIUM_PATH, or `chromium` on PATH): nothing to do.
#   2. Debian: `apt-get install chromium` (as root, or through passwordless sudo).
#   3. Elsewhere (Ubuntu's `chromium` is a snap, which does not run headless in containers or CI):
#      Playwright's own Chromium build with its system libraries (`playwright install --with-deps`).
#   Otherwise: one line with the exact command, and a non-zero exit before any test runs.
set -eu
bin="${1:-.venv/bin}"

if [ -n "${CHROMIUM_PATH:-}" ]; then
  [ -x "$CHROMIUM_PATH" ] && exit 0
  echo "CHROMIUM_PATH=$CHROMIUM_PATH is not an executable: unset it or point it at Chromium" >&2
  exit 1
fi
command -v chromium >/dev/null 2>&1 && exit 0
# Playwright's own build, from an earlier run of step 3.
"$bin/python" -c 'import sys
from playwright.sync_api import sync_playwright
import os
with sync_playwright() as pw:
    sys.exit(0 if os.path.exists(pw.chromium.executable_path) else 1)' 2>/dev/null && exit 0

if [ "$(id -u)" = 0 ]; then sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"
else sudo=none
fi
distro=$(. /etc/os-release 2>/dev/null && echo "${ID:-}") || distro=""

if [ "$distro" = debian ]; then
  if [ "$sudo" = none ]; then
    echo "The console tests need Chromium: run 'sudo apt-get install -y chromium', then make test again." >&2
    exit 1
  fi
  echo "Installing Debian's chromium for the console tests (apt-get)..."
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
  exit 0
fi

if [ "$sudo" = none ]; then
  echo "The console tests need Chromium: run 'sudo $bin/playwright install-deps chromium && $bin/playwright install chromium', then make test again." >&2
  exit 1
fi
echo "Installing Playwright's Chromium and its system libraries for the console tests..."
$sudo "$bin/playwright" install-deps chromium
"$bin/playwright" install chromium

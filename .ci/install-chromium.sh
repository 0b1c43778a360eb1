#!/usr/bin/env bash
# Installs headless Chromium and its WebDriver (Debian's chromium, chromium-driver) for
# tests/test_explorer.py, which drives the attribution explorer page in it through Selenium.
# Quiet and idempotent; never fails CI: where apt cannot install them, the browser test skips
# and says why.
set -uo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-chromium: not root or no apt-get; the browser test will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log=/tmp/install-chromium.log
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver; } \
  >"$log" 2>&1; then
  echo "install-chromium: apt-get failed, the browser test will skip; the tail of $log:" >&2
  tail -n 20 "$log" >&2
fi
exit 0

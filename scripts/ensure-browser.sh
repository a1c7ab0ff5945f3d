#!/usr/bin/env bash
# Make sure Debian's Chromium (used by the headless browser test) is installed.
# Part of `make test`: nothing to install by hand.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ] && ! command -v sudo >/dev/null 2>&1; then
  echo "ensure-browser: /usr/bin/chromium is missing and this user cannot install it;" >&2
  echo "  run: sudo apt-get install -y chromium chromium-driver" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" = "0" ] || SUDO="sudo"
echo "ensure-browser: installing chromium (Debian package) for the browser test"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
/usr/bin/chromium --version

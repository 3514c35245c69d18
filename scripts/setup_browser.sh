#!/usr/bin/env bash
# Install Debian's Chromium and its WebDriver (for the service's browser test) when they
# are missing and we are root. Idempotent and quiet: does nothing when both are present,
# and only warns (exit 0) when it cannot install them, so the browser test skips instead.
set -euo pipefail

have() { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }

if have; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "setup_browser: chromium/chromedriver missing and not root; the browser test will be skipped" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_browser: no apt-get here; install chromium and chromedriver yourself to run the browser test" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver; } >"$log" 2>&1; then
    echo "setup_browser: installing chromium failed; the browser test will be skipped. Last lines:" >&2
    tail -n 5 "$log" >&2
    exit 0
fi
have || echo "setup_browser: chromium installed but /usr/bin/chromium or /usr/bin/chromedriver is missing" >&2

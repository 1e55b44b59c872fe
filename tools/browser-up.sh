#!/usr/bin/env bash
# Install Debian's Chromium and fonts for the JupyterLab browser test (tests/notebooks/test_browser.py),
# like tools/slurm-up.sh installs SLURM: only when missing, idempotent. Playwright drives this system
# browser (executable_path=/usr/bin/chromium); its own browser download cannot work offline.
set -euo pipefail
say() { echo "browser-up: $*"; }

if command -v chromium >/dev/null && fc-list 2>/dev/null | grep -qi dejavu; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    say "chromium is missing; install it once with: sudo apt-get install -y chromium fonts-dejavu" >&2
    exit 1
fi
say "installing chromium and fonts from Debian (about 1 min)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium fonts-dejavu >/dev/null

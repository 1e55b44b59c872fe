#!/usr/bin/env bash
# `make test-nonroot`: the test suite for a user without root (CI runs `make test` as root).
# With SLURM installed, tools/slurm-up.sh starts a single-user cluster and every test runs; without it,
# every test but the SLURM ones runs, and the last line says how many were left out and what to run
# once with sudo. The browser test runs when Chromium is installed (tools/browser-up.sh says how).
# Arguments are passed to pytest instead of the default `notebooks tests`.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RESULTS=${TEST_RESULTS:-$PWD/.cache/test-results}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(notebooks tests)
pytest=("$PY" -m pytest -p no:cacheprovider --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg)

bash tools/browser-up.sh || echo "test-nonroot: the browser test will be skipped (no Chromium)" >&2
if [ "$(id -u)" -eq 0 ]; then
    bash tools/slurm-up.sh || exit $?
    slurm=yes
else
    # a cluster of the user's own trusts whoever reaches its ports (auth/none): one this script starts
    # is stopped when the tests end; one that was already up is left as it was
    bash tools/slurm-user-up.sh --running 2>/dev/null || trap 'bash tools/slurm-user-up.sh --stop' EXIT
    if conf=$(bash tools/slurm-up.sh); then
        export SLURM_CONF=${conf##*$'\n'}
        slurm=yes
    else
        status=$?
        [ "$status" -eq 3 ] || exit "$status"  # 3: SLURM not installed; anything else is a real failure
        slurm=no
    fi
fi
rm -rf "$RESULTS"
export DDVAL_RESULTS=$RESULTS DDVAL_PROGRESS=off
if [ "$slurm" = yes ]; then
    "${pytest[@]}" "${targets[@]}"
    exit $?
fi
left=$("${pytest[@]}" --collect-only -q -m slurm "${targets[@]}" 2>/dev/null | grep -c '::')
"${pytest[@]}" -m "not slurm" "${targets[@]}"
status=$?
echo "test-nonroot: left out $left SLURM test(s): SLURM is not installed (run once: sudo apt-get install -y slurm-wlm)"
exit $status

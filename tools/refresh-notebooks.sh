#!/usr/bin/env bash
# Re-execute the committed notebooks in place, as `make test` will check them under nbval: 01-05 against a
# fresh scratch results folder (so each stage really runs, as in CI), 06 on the result tables shipped in
# results/. Run it after a change that alters what a notebook prints, then review `git diff notebooks/`.
# Usage: tools/refresh-notebooks.sh [notebooks/0X_name.ipynb ...]   (default: all six, in order)
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ddval-refresh.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
notebooks=("$@")
[ ${#notebooks[@]} -gt 0 ] || notebooks=(notebooks/0[1-6]_*.ipynb)
for nb in "${notebooks[@]}"; do
    echo "refresh-notebooks: executing $nb (results in $scratch)"
    DDVAL_RESULTS="$scratch" DDVAL_PROGRESS=off .venv/bin/jupyter nbconvert --to notebook --execute --inplace \
        --ExecutePreprocessor.timeout=-1 --ExecutePreprocessor.kernel_name=ddval "$nb"
done

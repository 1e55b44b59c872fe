#!/usr/bin/env bash
# sbatch array script: array task $SLURM_ARRAY_TASK_ID runs papermill on row $SLURM_ARRAY_TASK_ID of a
# ddval manifest (one fresh `ddval` kernel per task) and exits with its status, so that
# `--dependency=afterok` holds back the next stage when a notebook fails.
#
#   sbatch --array=ROWS [resources] slurm/papermill_job.sh MANIFEST [REPO] [PYTHON]
#
# MANIFEST  manifest.jsonl written by `ddval submit` (absolute paths inside)
# REPO      the ddval checkout (default: the directory sbatch was called from)
# PYTHON    interpreter of the project's environment (default: REPO/.venv/bin/python)
#
# Resources (CPUs, memory, GPUs, time, partition, account, %K) are sbatch options chosen by
# `ddval submit` from the preset's `slurm:` section and its command line: none are set here.
# The executed notebook, with the provenance in its metadata, goes to the row's `output`; a task that
# is killed (time limit) leaves `<output stem>.partial.ipynb` and simply runs again when resubmitted.
#SBATCH --job-name=ddval
set -uo pipefail

if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
    echo "papermill_job.sh: run me as a job array: sbatch --array=ROWS $0 MANIFEST [REPO] [PYTHON]" >&2
    exit 2
fi
MANIFEST=${1:?usage: papermill_job.sh MANIFEST [REPO] [PYTHON]}
REPO=${2:-${SLURM_SUBMIT_DIR:-$PWD}}
PYTHON=${3:-$REPO/.venv/bin/python}
if [ ! -x "$PYTHON" ]; then
    echo "papermill_job.sh: no Python environment at $PYTHON (run \`make env\` in $REPO)" >&2
    exit 2
fi

export PYTHONPATH="$REPO/lib${PYTHONPATH:+:$PYTHONPATH}"
export DDVAL_PROGRESS=${DDVAL_PROGRESS:-text}
cd "$REPO" || exit 2
echo "ddval task: job ${SLURM_ARRAY_JOB_ID:-?}_${SLURM_ARRAY_TASK_ID} on $(hostname), row ${SLURM_ARRAY_TASK_ID} of $MANIFEST"

"$PYTHON" -m ddval.cli run-task "$MANIFEST" "$SLURM_ARRAY_TASK_ID"
status=$?
echo "ddval task: exit status $status"
exit $status

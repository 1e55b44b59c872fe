#!/usr/bin/env bash
# The single-user SLURM cluster of tools/slurm-up.sh for a user without root (see its header): daemons
# as this user, auth/none, no cgroups, state and logs under $DDVAL_SLURM_DIR (default
# ~/.cache/ddval-slurm), ports of this user. Prints the config file as its last line (for SLURM_CONF).
# Idempotent. Exit status 3: SLURM is not installed (installing it needs root, once).
#
# auth/none trusts whoever connects, and the daemons listen on every interface: while the cluster runs,
# anyone who reaches its two ports can run jobs as you. Keep it up only while you need it:
#   tools/slurm-user-up.sh --stop       stops it (`make test-nonroot` does, when it started it)
#   tools/slurm-user-up.sh --running    exit status 0 when it is up, 1 when not
set -euo pipefail

TIMEOUT=${SLURM_UP_TIMEOUT:-90}
say() { echo "slurm-up: $*" >&2; }
die() { echo "slurm-up: error: $*" >&2; exit 1; }
# shellcheck source=tools/slurm-common.sh
source "$(dirname "$0")/slurm-common.sh"
find_daemon() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true; }

ME=$(id -un)
BASE=${DDVAL_SLURM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ddval-slurm}
case "${1:-}" in
    --stop)
        stop_pidfile "$BASE/run/slurmd.pid"
        stop_pidfile "$BASE/run/slurmctld.pid"
        say "stopped the cluster of $ME ($BASE)"
        exit 0 ;;
    --running)
        alive "$BASE/run/slurmctld.pid" && alive "$BASE/run/slurmd.pid" && exit 0
        exit 1 ;;
    "") ;;
    *) die "unknown option $1 (expected --stop, --running or nothing)" ;;
esac

SLURMCTLD=$(find_daemon slurmctld)
SLURMD=$(find_daemon slurmd)
if [ -z "$SLURMCTLD" ] || [ -z "$SLURMD" ] || ! command -v sinfo >/dev/null; then
    echo "slurm-up: SLURM is not installed and installing it needs root: run once" \
         "\`sudo apt-get install -y slurm-wlm\` (then this script starts a cluster of your own)," \
         "or \`make test-nonroot\` to run every test but the SLURM ones" >&2
    exit 3
fi

CONF=$BASE/slurm.conf
NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
PORT=${DDVAL_SLURM_PORT:-$((20000 + 2 * ($(id -u) % 5000)))}  # slurmctld; slurmd takes the next one
mkdir -p "$BASE/ctld" "$BASE/slurmd" "$BASE/log" "$BASE/run"
export SLURM_CONF=$CONF

NEW_CONF=$(mktemp)
trap 'rm -f "$NEW_CONF"' EXIT
cat >"$NEW_CONF" <<CONF
# written by ddval tools/slurm-user-up.sh: single-user, single-node cluster of $ME (no root, no munge)
ClusterName=ddval-$ME
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/none
CredType=cred/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SlurmUser=$ME
SlurmdUser=$ME
StateSaveLocation=$BASE/ctld
SlurmdSpoolDir=$BASE/slurmd
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
ReturnToService=2
MinJobAge=3600
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
install_conf "$NEW_CONF" "$CONF" "node $NODE, $CPUS CPUs, ${MEM_MB} MB, ports $PORT-$((PORT + 1))"

ensure_daemons "$CHANGED" "$BASE/run/slurmctld.pid" "$BASE/run/slurmd.pid" "$SLURMCTLD" "$SLURMD" -f "$CONF"
wait_for_node "$NODE" "$TIMEOUT" "$BASE/log"
say "for sbatch, sinfo and the tests: export SLURM_CONF=$CONF"
echo "$CONF"

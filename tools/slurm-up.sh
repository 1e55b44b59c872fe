#!/usr/bin/env bash
# Start a single-node SLURM cluster on this (Debian) machine, for `ddval submit --backend slurm` and the
# SLURM integration tests (`make test`, CI). Idempotent: re-running it when the node is already up
# changes nothing. Recipe: docs in /work/shared/reference/environment.md §7 (verified on Debian 12).
#
# As root (CI, a machine of your own):
#   1. installs slurm-wlm + munge from Debian with apt-get when missing;
#   2. writes /etc/slurm/slurm.conf for this host (CPUs = nproc, RealMemory = 90 % of MemTotal);
#   3. creates the munge key when missing and starts munged as user munge;
#   4. starts slurmctld and slurmd as root (restarted only when the config changed);
#   5. waits (bounded) until `sinfo` shows the node idle.
#
# As any other user (a reviewer's workstation): when SLURM is installed, a single-user cluster of this
# host with everything under $DDVAL_SLURM_DIR (default ~/.cache/ddval-slurm): the daemons run as you
# (SlurmUser = SlurmdUser = you), no munge (auth/none: it trusts whoever reaches its ports, so while it
# runs anyone who can connect runs jobs as you; `tools/slurm-user-up.sh --stop` stops it, and `make
# test-nonroot` does when it started it), no cgroups, ports of your own (20000 + 2 x (uid mod 5000),
# so it never meets the root cluster). The last line it prints is the config file: `export
# SLURM_CONF=<that file>` for sbatch, sinfo and the tests (`make test-nonroot` does this). When SLURM
# is not installed it says in one line what to run once with sudo, and exits with status 3.
#
# Environment: SLURM_UP_TIMEOUT (seconds to wait for the node, default 90); without root also
# DDVAL_SLURM_DIR (state, logs, config) and DDVAL_SLURM_PORT (slurmctld's port; slurmd takes the next).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    exec bash "$(dirname "$0")/slurm-user-up.sh" "$@"
fi

TIMEOUT=${SLURM_UP_TIMEOUT:-90}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid

say() { echo "slurm-up: $*"; }
die() { echo "slurm-up: error: $*" >&2; exit 1; }
# shellcheck source=tools/slurm-common.sh
source "$(dirname "$0")/slurm-common.sh"

# --- 1. packages ---------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge from Debian (about 30 s)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# --- 2. configuration ----------------------------------------------------------------------------
NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
mkdir -p "$CONF_DIR" "$LOG_DIR" "$CTLD_SPOOL" "$SLURMD_SPOOL"
NEW_CONF=$(mktemp)
trap 'rm -f "$NEW_CONF"' EXIT
cat >"$NEW_CONF" <<EOF
# written by ddval tools/slurm-up.sh: single-node cluster for local runs and CI
ClusterName=ddval
SlurmctldHost=$NODE
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
ReturnToService=2
# keep finished jobs visible to scontrol for an hour (no accounting database on this node)
MinJobAge=3600
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
install_conf "$NEW_CONF" "$CONF" "node $NODE, $CPUS CPUs, ${MEM_MB} MB"

# --- 3. munge --------------------------------------------------------------------------------------
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge: /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
chmod 400 /etc/munge/munge.key
if ! alive "$MUNGE_PID"; then
    say "starting munged as user munge"
    runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_PID"
fi

# --- 4. slurm daemons ------------------------------------------------------------------------------
ensure_daemons "$CHANGED" "$CTLD_PID" "$SLURMD_PID" /usr/sbin/slurmctld /usr/sbin/slurmd

# --- 5. wait for the node --------------------------------------------------------------------------
wait_for_node "$NODE" "$TIMEOUT" "$LOG_DIR"

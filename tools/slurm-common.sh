# Sourced by tools/slurm-up.sh (root) and tools/slurm-user-up.sh (a user without root): the daemons they
# start, found by their pid files, and the wait for the node. Needs `say` and `die` of the caller.

install_conf() {  # NEW_CONF CONF WHAT: install NEW_CONF as CONF when it differs; sets CHANGED (1: it did)
    CHANGED=0
    if ! cmp -s "$1" "$2"; then
        install -m 644 "$1" "$2"
        CHANGED=1
        say "wrote $2 ($3)"
    fi
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() {  # stop the daemon this script started (by the id in its pid file), wait for it to exit
    local pid
    alive "$1" || return 0
    pid=$(cat "$1")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    die "daemon $pid ($1) did not stop"
}

ensure_daemons() {  # CHANGED CTLD_PIDFILE SLURMD_PIDFILE SLURMCTLD SLURMD [daemon options...]
    local changed=$1 ctld_pid=$2 slurmd_pid=$3 slurmctld=$4 slurmd=$5
    shift 5
    if [ "$changed" -eq 1 ]; then  # restarted only when the config changed
        stop_pidfile "$slurmd_pid"
        stop_pidfile "$ctld_pid"
    fi
    if ! alive "$ctld_pid"; then
        say "starting slurmctld as $(id -un)"
        "$slurmctld" "$@"
    fi
    if ! alive "$slurmd_pid"; then
        say "starting slurmd as $(id -un)"
        "$slurmd" "$@"
    fi
}

wait_for_node() {  # NODE TIMEOUT LOG_DIR: returns when sinfo shows the node up, dies after TIMEOUT seconds
    local node=$1 timeout=$2 logs=$3 state=""
    for _ in $(seq $((timeout * 2))); do
        state=$(sinfo -h -n "$node" -o %T 2>/dev/null | head -n1 || true)
        case "$state" in
            idle|mixed|allocated|completing) say "node $node is $state"; return 0 ;;
            down*|drain*|drained*) scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    die "node $node not up after ${timeout}s (state '${state:-no answer}'); see $logs/slurmctld.log and $logs/slurmd.log"
}

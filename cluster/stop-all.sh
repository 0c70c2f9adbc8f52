#!/usr/bin/env bash
# Stop the dcf cluster started by cluster/start-all.sh: exactly the processes of the pid
# files in the run directory, each only while it is still the process that was started.
# cluster/stop-all.sh --help says how.
set -uo pipefail

usage() {
  cat <<'EOF'
usage: cluster/stop-all.sh [--run-dir DIR] [--timeout SECONDS]

Stop the cluster that cluster/start-all.sh started from the run directory (default
cluster/run, or the DCF_CLUSTER_RUN environment variable): the workers first, then the
scheduler, each with its child processes (SIGTERM, then SIGKILL after --timeout seconds,
default 20). Safe to run twice.

A pid file records the PID, the process's start time and its arguments; a process is
signalled only while all three still match. A stale pid file (the process is gone, or its
PID now belongs to another process) is reported and removed; nothing is signalled for it.
Workers on other hosts are stopped over ssh, with the same start-time check done there.
EOF
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
run_dir="${DCF_CLUSTER_RUN:-$here/run}"
timeout=20
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --run-dir|--timeout) [ $# -ge 2 ] || { echo "stop-all: $1 needs a value" >&2; exit 2; } ;;
  esac
  case "$1" in
    --run-dir) run_dir="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    *) echo "stop-all: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$timeout" =~ ^[0-9]+$ ]] || { echo "stop-all: --timeout must be a number of seconds" >&2; exit 2; }

shopt -s nullglob
pids=("$run_dir"/worker-*.pid "$run_dir"/[s]cheduler.pid)
if [ "${#pids[@]}" -eq 0 ]; then
  rm -f "$run_dir"/*.host "$run_dir"/*.dask-pid "$run_dir/scheduler.json"
  echo "stop-all: nothing to stop in $run_dir"
  exit 0
fi

# shellcheck source=proc.sh
source "$here/proc.sh"

stopped=0
stale=0
for f in "${pids[@]}"; do
  name="$(basename "$f" .pid)"
  pid="" start="" args=""
  read -r pid start args < "$f" 2>/dev/null
  if ! [[ "$pid" =~ ^[0-9]+$ ]]; then
    echo "stop-all: $name: no PID in $f; removed"
    rm -f "$f" "$run_dir/$name.host"
    continue
  fi
  if ! [[ "$start" =~ ^[0-9]+$ ]]; then
    echo "stop-all: $name: $f records no start time (an older start-all?): pid $pid left alone, file removed"
    rm -f "$f" "$run_dir/$name.host"
    stale=$((stale + 1))
    continue
  fi

  if [ -f "$run_dir/$name.host" ]; then
    host="$(cat "$run_dir/$name.host")"
    # checked there: signalled only while the PID's start time is the one recorded
    check="s=\$(sed 's/.*) //' /proc/$pid/stat 2>/dev/null | cut -d ' ' -f 20)"
    check+="; if [ \"\$s\" = $start ]; then kill -TERM -- -$pid 2>/dev/null || kill -TERM $pid; echo stopped; else echo stale; fi"
    said="$(ssh -o BatchMode=yes -o ConnectTimeout=20 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 \
            "$host" "$check" 2>/dev/null)"
    case "$said" in
      stopped) stopped=$((stopped + 1)) ;;
      stale) echo "stop-all: $name: stale pid file (pid $pid on $host is gone or another process); removed"
             stale=$((stale + 1)) ;;
      *) echo "stop-all: $name: could not reach $host over ssh; pid $pid there may still run" ;;
    esac
    rm -f "$run_dir/$name.host" "$f"
    continue
  fi

  if ! running "$pid"; then
    echo "stop-all: $name: stale pid file (pid $pid is gone); removed"
    stale=$((stale + 1))
  elif [ "$(start_time "$pid")" != "$start" ] || [[ "$(cmdline "$pid")" != *" $args" ]]; then
    echo "stop-all: $name: stale pid file (pid $pid is now another process: $(cmdline "$pid" | cut -c 1-80)); left alone, removed"
    stale=$((stale + 1))
  else
    # the process leads its own group (setsid): the group goes, a nanny's worker with it
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    for _ in $(seq $((timeout * 10))); do
      running "$pid" || break
      sleep 0.1
    done
    if running "$pid"; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    fi
    # children left in the group go too (the group id cannot be reused while any is left)
    pkill -KILL -g "$pid" 2>/dev/null || true
    stopped=$((stopped + 1))
  fi
  rm -f "$f"
done
rm -f "$run_dir"/*.dask-pid "$run_dir/scheduler.json"
echo "stop-all: stopped $stopped process group(s) from $run_dir"

#!/usr/bin/env bash
# Stop the dcf cluster started by cluster/start-all.sh: exactly the processes whose pid
# files are in the run directory (workers first, then the scheduler). Safe to run twice.
#
#   cluster/stop-all.sh [--run-dir DIR] [--timeout SECONDS]
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
run_dir="${DCF_CLUSTER_RUN:-$here/run}"
timeout=20
while [ $# -gt 0 ]; do
  case "$1" in
    --run-dir) run_dir="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "stop-all: unknown option $1" >&2; exit 2 ;;
  esac
done

shopt -s nullglob
pids=("$run_dir"/worker-*.pid "$run_dir"/[s]cheduler.pid)
if [ "${#pids[@]}" -eq 0 ]; then
  echo "stop-all: nothing to stop in $run_dir"
  exit 0
fi

ours() {  # a live process group led by a dask process of ours
  local pid="$1"
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "dask"
}

stopped=0
for f in "${pids[@]}"; do
  pid="$(cat "$f" 2>/dev/null)"
  name="$(basename "$f" .pid)"
  if [ -f "$run_dir/$name.host" ]; then
    host="$(cat "$run_dir/$name.host")"
    ssh -o BatchMode=yes "$host" "kill -TERM -- -$pid 2>/dev/null || kill -TERM $pid" 2>/dev/null \
      && stopped=$((stopped + 1))
    rm -f "$run_dir/$name.host" "$f"
    continue
  fi
  if [[ "$pid" =~ ^[0-9]+$ ]] && ours "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    for _ in $(seq $((timeout * 10))); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    fi
    # children left in the group (a nanny's worker) go too
    pkill -KILL -g "$pid" 2>/dev/null || true
    stopped=$((stopped + 1))
  fi
  rm -f "$f"
done
rm -f "$run_dir"/*.dask-pid
echo "stop-all: stopped $stopped process group(s) from $run_dir"

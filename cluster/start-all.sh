#!/usr/bin/env bash
# Start the dcf cluster: one dask scheduler and the workers of cluster/workers.
#
#   cluster/start-all.sh [--conf FILE] [--workers-file FILE] [--workers N] [--threads N]
#                        [--memory SIZE] [--host ADDR] [--port N] [--dashboard-port N]
#                        [--tls-ca-file F --tls-cert F --tls-key F] [--run-dir DIR]
#                        [--python PYTHON]
#
# Settings come from cluster.conf, then the flags. --workers N starts N local workers
# instead of reading the workers file. Waits until every worker has registered, then
# prints the scheduler address and the dashboard URL. Logs and pid files go to the run
# directory (default cluster/run, or $DCF_CLUSTER_RUN); cluster/stop-all.sh stops exactly
# the processes listed there.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
conf="$here/cluster.conf"
workers_file="$here/workers"
run_dir="${DCF_CLUSTER_RUN:-$here/run}"
python="${DCF_PYTHON:-python}"
declare -A C=([scheduler_host]=127.0.0.1 [scheduler_port]=8786 [dashboard_port]=8787
              [threads]=2 [memory]=3GB [timeout]=60 [tls_ca_file]= [tls_cert]= [tls_key]=)
declare -A F=()
n_local=""

die() { echo "start-all: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --conf) conf="$2"; shift 2 ;;
    --workers-file) workers_file="$2"; shift 2 ;;
    --workers) n_local="$2"; shift 2 ;;
    --run-dir) run_dir="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    --host) F[scheduler_host]="$2"; shift 2 ;;
    --port) F[scheduler_port]="$2"; shift 2 ;;
    --dashboard-port) F[dashboard_port]="$2"; shift 2 ;;
    --threads) F[threads]="$2"; shift 2 ;;
    --memory) F[memory]="$2"; shift 2 ;;
    --timeout) F[timeout]="$2"; shift 2 ;;
    --tls-ca-file) F[tls_ca_file]="$2"; shift 2 ;;
    --tls-cert) F[tls_cert]="$2"; shift 2 ;;
    --tls-key) F[tls_key]="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

# cluster.conf: KEY = VALUE lines, parsed here, never sourced
if [ -f "$conf" ]; then
  n=0
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line="${line%%#*}"
    [[ "$line" =~ ^[[:space:]]*$ ]] && continue
    [[ "$line" =~ ^[[:space:]]*([a-z_]+)[[:space:]]*=[[:space:]]*(.*[^[:space:]])?[[:space:]]*$ ]] \
      || die "$conf:$n: expected KEY = VALUE"
    key="${BASH_REMATCH[1]}"; value="${BASH_REMATCH[2]:-}"
    [ -n "${C[$key]+set}" ] || die "$conf:$n: unknown setting $key"
    C[$key]="$value"
  done < "$conf"
fi
for key in "${!F[@]}"; do C[$key]="${F[$key]}"; done

host="${C[scheduler_host]}"; port="${C[scheduler_port]}"; dport="${C[dashboard_port]}"
[[ "$port" =~ ^[0-9]+$ && "$dport" =~ ^[0-9]+$ ]] || die "ports must be numbers"
[[ "${C[threads]}" =~ ^[1-9][0-9]*$ ]] || die "threads must be a positive integer"
[[ "${C[timeout]}" =~ ^[1-9][0-9]*$ ]] || die "timeout must be a positive integer"

protocol=tcp
tls=()
if [ -n "${C[tls_ca_file]}${C[tls_cert]}${C[tls_key]}" ]; then
  for k in tls_ca_file tls_cert tls_key; do
    [ -r "${C[$k]}" ] || die "TLS needs tls_ca_file, tls_cert and tls_key; cannot read $k='${C[$k]}'"
  done
  protocol=tls
  tls=(--tls-ca-file "${C[tls_ca_file]}" --tls-cert "${C[tls_cert]}" --tls-key "${C[tls_key]}")
fi
connect_host="$host"
[ "$host" = "0.0.0.0" ] && connect_host="$(hostname -I 2>/dev/null | awk '{print $1}')"
address="$protocol://$connect_host:$port"

# the workers: "HOST THREADS MEMORY" per line
workers=()
if [ -n "$n_local" ]; then
  [[ "$n_local" =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive integer"
  for _ in $(seq "$n_local"); do workers+=("127.0.0.1 ${C[threads]} ${C[memory]}"); done
else
  [ -r "$workers_file" ] || die "cannot read the workers file $workers_file"
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%%#*}"
    read -r w_host w_threads w_memory _ <<< "$line" || true
    [ -z "${w_host:-}" ] && continue
    workers+=("$w_host ${w_threads:-${C[threads]}} ${w_memory:-${C[memory]}}")
  done < "$workers_file"
fi
[ "${#workers[@]}" -gt 0 ] || die "no workers listed in $workers_file"

is_local() { case "$1" in localhost|127.*|::1|"$(hostname)") return 0 ;; *) return 1 ;; esac; }

mkdir -p "$run_dir"
run_dir="$(cd "$run_dir" && pwd)"
if [ -f "$run_dir/scheduler.pid" ] && kill -0 "$(cat "$run_dir/scheduler.pid")" 2>/dev/null; then
  die "a cluster started from $run_dir is still running: run cluster/stop-all.sh first"
fi
rm -f "$run_dir"/*.pid "$run_dir"/*.host

export DASK_CONFIG="$here/dask.yaml"
# setsid: each process leads its own group, so stop-all.sh can end it with its children
setsid "$python" -m dask scheduler --host "$host" --port "$port" \
  --dashboard-address "$host:$dport" --pid-file "$run_dir/scheduler.dask-pid" "${tls[@]}" \
  > "$run_dir/scheduler.log" 2>&1 < /dev/null &
echo $! > "$run_dir/scheduler.pid"

i=0
for w in "${workers[@]}"; do
  i=$((i + 1))
  read -r w_host w_threads w_memory <<< "$w"
  args=(-m dask worker "$address" --host "$w_host" --nthreads "$w_threads" --memory-limit "$w_memory"
        --name "worker-$i" --local-directory "$run_dir/worker-$i" --dashboard-address "$w_host:0"
        "${tls[@]}")
  if is_local "$w_host"; then
    setsid "$python" "${args[@]}" > "$run_dir/worker-$i.log" 2>&1 < /dev/null &
    echo $! > "$run_dir/worker-$i.pid"
  else
    case "$host" in 127.*|localhost) die "worker host $w_host cannot reach a scheduler on $host: give --host ADDR" ;; esac
    remote="cd $(printf %q "$PWD") && DASK_CONFIG=$(printf %q "$DASK_CONFIG") setsid $(printf %q "$python")"
    for a in "${args[@]}"; do remote+=" $(printf %q "$a")"; done
    remote+=" > /tmp/dcf-worker-$i.log 2>&1 < /dev/null & echo \$!"
    ssh -o BatchMode=yes "$w_host" "$remote" > "$run_dir/worker-$i.pid" \
      || die "could not start worker $i on $w_host over ssh"
    echo "$w_host" > "$run_dir/worker-$i.host"
  fi
done

# wait for registration
security=()
[ "$protocol" = tls ] && security=("${C[tls_ca_file]}" "${C[tls_cert]}" "${C[tls_key]}")
if ! "$python" - "$address" "${#workers[@]}" "${C[timeout]}" "${security[@]}" <<'PY'
import sys
from distributed import Client
from distributed.security import Security

address, n, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
sec = None
if len(sys.argv) > 4:
    ca, cert, key = sys.argv[4:7]
    sec = Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)
try:
    with Client(address, timeout=f"{timeout}s", security=sec) as c:
        c.wait_for_workers(n, timeout=timeout)
except Exception as exc:  # noqa: BLE001
    print(f"start-all: the cluster did not come up: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
PY
then
  echo "start-all: see the logs in $run_dir; stopping what was started" >&2
  "$here/stop-all.sh" --run-dir "$run_dir" >&2 || true
  exit 1
fi

dash_host="$connect_host"
echo "scheduler  $address"
echo "dashboard  http://$dash_host:$dport/status"
echo "workers    ${#workers[@]} registered ($(printf '%s\n' "${workers[@]}" | awk '{print $2 " threads, " $3}' | sort -u | paste -sd';'))"
echo "run dir    $run_dir (logs, pid files); stop with cluster/stop-all.sh"

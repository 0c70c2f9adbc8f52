#!/usr/bin/env bash
# Start the dcf cluster: one dask scheduler and the workers of cluster/workers.
# cluster/start-all.sh --help says how; cluster/stop-all.sh stops what it started.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: cluster/start-all.sh [OPTIONS]

Start one dask scheduler and the workers listed in cluster/workers, wait until every
worker has registered, then print the scheduler address and the dashboard URL.

Settings come from cluster.conf, then these flags:
  --conf FILE           settings file (default cluster/cluster.conf)
  --workers-file FILE   one worker per line: HOST [THREADS [MEMORY]] (default cluster/workers)
  --workers N           start N workers on this machine instead of reading the workers file
  --threads N           threads per worker (default 2)
  --memory SIZE         memory limit per worker (default 3GB)
  --host ADDR           address the scheduler and its dashboard listen on (default 127.0.0.1;
                        an empty value means the default; 0.0.0.0 means every interface)
  --port N              scheduler port (default 8786)
  --dashboard-port N    dashboard port on the scheduler host (default 8787; ":N" means the
                        same; 0 means any free port)
  --timeout SECONDS     how long to wait for the scheduler to start, and then for the
                        workers to register (default 60)
  --tls-ca-file F --tls-cert F --tls-key F
                        use tls:// (all three PEM files)
  --run-dir DIR         logs and pid files (default cluster/run, or the DCF_CLUSTER_RUN
                        environment variable)
  --python PYTHON       the Python with dcf installed (default python, or DCF_PYTHON)
  -h, --help            show this text

Both ports must be free: if either is in use, nothing is started and the script fails.
On any failure it stops every process it started and exits non-zero. Every wait is
bounded by --timeout. cluster/stop-all.sh stops the cluster.
EOF
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
conf="$here/cluster.conf"
workers_file="$here/workers"
run_dir="${DCF_CLUSTER_RUN:-$here/run}"
python="${DCF_PYTHON:-python}"
declare -A C=([scheduler_host]=127.0.0.1 [scheduler_port]=8786 [dashboard_port]=8787
              [threads]=2 [memory]=3GB [timeout]=60 [tls_ca_file]= [tls_cert]= [tls_key]=)
declare -A F=()
n_local=""
started=""   # set once a process has been started: failures then stop what was started

die() { echo "start-all: $*" >&2; exit 2; }   # before anything is started

while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
  esac
  [ $# -ge 2 ] || die "$1 needs a value (see --help)"
  case "$1" in
    --conf) conf="$2" ;;
    --workers-file) workers_file="$2" ;;
    --workers) n_local="$2" ;;
    --run-dir) run_dir="$2" ;;
    --python) python="$2" ;;
    --host) F[scheduler_host]="$2" ;;
    --port) F[scheduler_port]="$2" ;;
    --dashboard-port) F[dashboard_port]="$2" ;;
    --threads) F[threads]="$2" ;;
    --memory) F[memory]="$2" ;;
    --timeout) F[timeout]="$2" ;;
    --tls-ca-file) F[tls_ca_file]="$2" ;;
    --tls-cert) F[tls_cert]="$2" ;;
    --tls-key) F[tls_key]="$2" ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift 2
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

# an empty host would make dask listen on every interface: it means the default instead
host="${C[scheduler_host]:-127.0.0.1}"; port="${C[scheduler_port]}"; dport="${C[dashboard_port]}"
# the dashboard listens on the scheduler host: ":PORT" is PORT there, never every interface
[[ "$dport" =~ ^:[0-9]+$ ]] && dport="${dport#:}"
[[ "$dport" =~ : ]] && die "dashboard_port must be a port number ('$dport' given): the dashboard listens on the scheduler host, set with --host"
[[ "$port" =~ ^[0-9]+$ && "$dport" =~ ^[0-9]+$ ]] || die "ports must be numbers"
port=$((10#$port)); dport=$((10#$dport))
[ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "the scheduler port must be 1-65535"
[ "$dport" -le 65535 ] || die "the dashboard port must be 0-65535 (0: any free port)"
[ "$port" != "$dport" ] || die "the scheduler and the dashboard need two different ports"
[[ "${C[threads]}" =~ ^[1-9][0-9]*$ ]] || die "threads must be a positive integer"
[[ "${C[timeout]}" =~ ^[1-9][0-9]*$ ]] || die "timeout must be a positive integer"
timeout="${C[timeout]}"

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
for w in "${workers[@]}"; do
  read -r w_host _ <<< "$w"
  if ! is_local "$w_host"; then
    case "$host" in 127.*|localhost) die "worker host $w_host cannot reach a scheduler on $host: give --host ADDR" ;; esac
  fi
done

# ------------------------------------------------------------------ processes
# A pid file holds one line: PID START ARGS. START is field 22 of /proc/PID/stat (when the
# process started, in clock ticks since boot) and ARGS the arguments after the program;
# stop-all.sh signals a PID only while both still match (a reused PID is left alone).

# shellcheck source=proc.sh
source "$here/proc.sh"
same_process() {  # same_process PIDFILE: its process is alive and is the one recorded
  local pid="" start="" args=""
  read -r pid start args < "$1" 2>/dev/null || true
  [[ "$pid" =~ ^[0-9]+$ && -n "$start" ]] && running "$pid" \
    && [ "$(start_time "$pid")" = "$start" ] && [[ "$(cmdline "$pid")" == *" $args" ]]
}

fail() {  # after processes were started: stop them all, then exit 1 with one line
  trap - INT TERM
  if [ -n "$started" ]; then
    "$here/stop-all.sh" --run-dir "$run_dir" > "$run_dir/stop-all.log" 2>&1 || true
    echo "start-all: $*; stopped what it had started (logs in $run_dir)" >&2
  else
    echo "start-all: $*" >&2
  fi
  exit 1
}

launch() {  # launch NAME ARG...: "$python" ARG... in its own session (stop-all ends the group)
  local name="$1"; shift
  local IFS=' '
  local want="$*"
  started=1
  setsid "$python" "$@" > "$run_dir/$name.log" 2>&1 < /dev/null &
  local pid=$! start
  start="$(start_time "$pid" || true)"
  echo "$pid $start $want" > "$run_dir/$name.pid"
  # until the program has replaced the forked shell (a bounded wait): from then on the pid
  # file matches the process
  for _ in $(seq 200); do
    same_process "$run_dir/$name.pid" && return 0
    running "$pid" || break
    sleep 0.1
  done
  # still the child forked above (same start time) but not the program: end it here
  if running "$pid" && [ -n "$start" ] && [ "$(start_time "$pid")" = "$start" ]; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  fail "$name (pid $pid) did not start as '$python $want': see $run_dir/$name.log"
}

mkdir -p "$run_dir"
run_dir="$(cd "$run_dir" && pwd)"
shopt -s nullglob
for f in "$run_dir"/*.pid; do
  name="$(basename "$f" .pid)"
  [ -f "$run_dir/$name.host" ] && die "$name on $(cat "$run_dir/$name.host") may still run from $run_dir: run cluster/stop-all.sh first"
  same_process "$f" && die "a cluster started from $run_dir is still running ($name): run cluster/stop-all.sh first"
done
shopt -u nullglob
rm -f "$run_dir"/*.pid "$run_dir"/*.host "$run_dir"/*.dask-pid "$run_dir/scheduler.json"

# Both ports must be free before anything starts (a bounded probe: bind, as dask will).
# Otherwise dask's scheduler would exit and the workers join whatever listens there, and
# dask's dashboard would move to a random port.
command -v "$python" > /dev/null || die "cannot find the Python '$python' (give --python, or set DCF_PYTHON)"
export DASK_CONFIG="$here/dask.yaml"
probe="$("$python" - "$host" "$port" "$dport" <<'PY'
import errno, signal, socket, sys

signal.alarm(20)  # a slow name lookup must not hang the start
host, ports = sys.argv[1], {"scheduler": int(sys.argv[2]), "dashboard": int(sys.argv[3])}
busy, other = [], []
for what, port in ports.items():
    if port == 0:
        continue
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        print(f"cannot resolve the scheduler host {host}: {exc}")
        sys.exit(3)
    for family, kind, proto, _, addr in infos:
        s = socket.socket(family, kind, proto)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tornado does
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                busy.append(f"{host}:{port} ({what} port)")
                break
            if exc.errno == errno.EADDRNOTAVAIL and host == "localhost" and addr[0] == "::1":
                continue  # no IPv6 here: dask skips it too
            other.append(f"cannot listen on {host}:{port} ({what} port): {exc.strerror}")
            break
        finally:
            s.close()
if busy:
    print(" and ".join(busy) + (" are" if len(busy) > 1 else " is")
          + " already in use by another program; nothing was started")
    sys.exit(1)
if other:
    print("; ".join(other) + "; nothing was started")
    sys.exit(1)
PY
)" || fail "${probe:-could not check that ports $port and $dport are free on $host}"

scheduler_args=(-m dask scheduler --host "$host" --port "$port" --dashboard-address "$host:$dport"
                --pid-file "$run_dir/scheduler.dask-pid" --scheduler-file "$run_dir/scheduler.json"
                "${tls[@]}")
trap 'fail "interrupted"' INT TERM
launch scheduler "${scheduler_args[@]}"
read -r scheduler_pid _ < "$run_dir/scheduler.pid"

# Wait (at most --timeout seconds) until the scheduler has written its scheduler file, then
# check that it is this process that listens on the port (/proc) and on the dashboard port
# asked for; print its id and the address the dashboard really listens on.
if ! scheduler="$("$python" - "$scheduler_pid" "$run_dir/scheduler.json" "$port" "$dport" "$timeout" <<'PY'
import json, os, socket, struct, sys, time

pid, path, port, dport, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])

def running():
    try:
        with open(f"/proc/{pid}/stat") as f:
            return not f.read().rsplit(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False

def listening():
    """(ip, port) of the TCP sockets this process listens on; None where /proc cannot tell."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return None
    found, readable = [], False
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            with open(f"/proc/net/{name}") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                continue
            ip, p = cols[1].split(":")
            words = [int(ip[i:i + 8], 16) for i in range(0, len(ip), 8)]
            found.append((socket.inet_ntop(family, struct.pack(f"={len(words)}I", *words)), int(p, 16)))
    return found if readable else None

deadline = time.monotonic() + timeout
info = None
while info is None:
    if not running():
        print("exited")
        sys.exit(3)
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError):
        if time.monotonic() > deadline:
            print(f"did not start listening within {timeout:g} s")
            sys.exit(4)
        time.sleep(0.1)
dash = (info.get("services") or {}).get("dashboard")
if not info.get("address", "").endswith(f":{port}"):
    print(f"listens at {info.get('address')}, not on port {port}")
    sys.exit(5)
sockets = listening()
if sockets is not None and port not in {p for _, p in sockets}:
    print(f"(pid {pid}) does not own port {port}")
    sys.exit(5)
if dash is None:
    print("started no dashboard")
    sys.exit(6)
if dport and dash != dport:
    print(f"could not listen on dashboard port {dport} (in use; dask moved it to {dash})")
    sys.exit(6)
hosts = sorted({ip for ip, p in sockets or [] if p == dash}, key=lambda ip: ip in ("0.0.0.0", "::"))
print(info["id"], hosts[0] if hosts else "-", dash)
PY
)"; then
  case "$scheduler" in
    exited)
      reason="$(grep -E '^[A-Za-z_.]+(Error|Exception): ' "$run_dir/scheduler.log" | grep -v 'failed to start' | tail -n 1 || true)"
      [ -n "$reason" ] || reason="$(tail -n 1 "$run_dir/scheduler.log")"
      fail "the scheduler exited instead of listening on $host:$port: $reason" ;;
    *) fail "the scheduler on $host:$port ${scheduler:-could not be checked}" ;;
  esac
fi
read -r scheduler_id dash_host dash_port <<< "$scheduler"

i=0
for w in "${workers[@]}"; do
  i=$((i + 1))
  read -r w_host w_threads w_memory <<< "$w"
  args=(-m dask worker "$address" --host "$w_host" --nthreads "$w_threads" --memory-limit "$w_memory"
        --name "worker-$i" --local-directory "$run_dir/worker-$i" --dashboard-address "$w_host:0"
        "${tls[@]}")
  if is_local "$w_host"; then
    launch "worker-$i" "${args[@]}"
  else
    # the remote shell prints "PID START" (field 22 of /proc/PID/stat): stop-all.sh checks it
    # there before it signals. Only the worker's command goes to the background (not a
    # "cd && ..." list, whose $! is a subshell that the worker would outlive)
    remote="cd $(printf %q "$PWD") || exit 1; DASK_CONFIG=$(printf %q "$DASK_CONFIG") setsid $(printf %q "$python")"
    for a in "${args[@]}"; do remote+=" $(printf %q "$a")"; done
    remote+=' > /tmp/dcf-worker-'"$i"'.log 2>&1 < /dev/null & p=$!; echo "$p $(sed "s/.*) //" /proc/$p/stat 2>/dev/null | cut -d " " -f 20)"'
    started=1
    echo "$w_host" > "$run_dir/worker-$i.host"
    ssh -o BatchMode=yes -o ConnectTimeout=20 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 "$w_host" "$remote" > "$run_dir/worker-$i.pid" \
      || fail "could not start worker $i on $w_host over ssh"
  fi
done

# wait for registration (at most --timeout seconds to connect, then as long for the workers),
# with the scheduler this script started: the same id as in its scheduler file
security=()
[ "$protocol" = tls ] && security=("${C[tls_ca_file]}" "${C[tls_cert]}" "${C[tls_key]}")
if ! registered="$("$python" - "$address" "${#workers[@]}" "$timeout" "$scheduler_id" "${security[@]}" 2>"$run_dir/register.log" <<'PY'
import sys
from distributed import Client
from distributed.security import Security

address, n, timeout, expected = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
sec = None
if len(sys.argv) > 5:
    ca, cert, key = sys.argv[5:8]
    sec = Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)
try:
    with Client(address, timeout=f"{timeout}s", security=sec) as c:
        got = c.scheduler_info()["id"]
        if got != expected:
            print(f"another scheduler ({got}) answers at {address}, not the one started ({expected})")
            sys.exit(1)
        c.wait_for_workers(n, timeout=timeout)
except Exception as exc:  # noqa: BLE001
    print(f"the cluster did not come up: {type(exc).__name__}: {exc}".replace("\n", " "))
    sys.exit(1)
PY
)"; then
  fail "${registered:-the cluster did not come up (see $run_dir/register.log)}"
fi
trap - INT TERM

if [ "$dash_host" = "-" ]; then        # /proc could not tell: the address it was given
  dash_host="$host"
fi
listen_note=""
case "$dash_host" in
  0.0.0.0|::) listen_note=" (listening on every interface)"; dash_host="$connect_host" ;;
esac
[[ "$dash_host" == *:* ]] && dash_host="[$dash_host]"
echo "scheduler  $address"
echo "dashboard  http://$dash_host:$dash_port/status$listen_note"
echo "workers    ${#workers[@]} registered ($(printf '%s\n' "${workers[@]}" | awk '{print $2 " threads, " $3}' | sort -u | paste -sd';'))"
echo "run dir    $run_dir (logs, pid files); stop with cluster/stop-all.sh"

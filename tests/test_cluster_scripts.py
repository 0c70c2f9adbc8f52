"""cluster/start-all.sh and stop-all.sh cannot be fooled: busy ports, stale pid files,
listening beyond loopback, --help (issue 19, item 8)."""

import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("dask") is None, reason="needs the dask command line"),
    pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to see what listens"),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc"),
]
START, STOP = ROOT / "cluster" / "start-all.sh", ROOT / "cluster" / "stop-all.sh"
ENV = {**os.environ, "DCF_PYTHON": sys.executable}
SMALL_WORKER = ["--workers", "1", "--threads", "1", "--memory", "1GB", "--timeout", "60"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(run_dir, *args):
    return subprocess.run([str(START), "--run-dir", str(run_dir), *map(str, args)],
                          capture_output=True, text=True, timeout=240, env=ENV)


def stop(run_dir, env=None):
    return subprocess.run([str(STOP), "--run-dir", str(run_dir)], capture_output=True, text=True,
                          timeout=120, env=env or ENV)


def processes_of(run_dir):
    """Live (not zombie) processes whose command line names this run directory."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (str(run_dir) in (p / "cmdline").read_bytes().decode(errors="ignore")
                        and _stat(int(p.name))[0] != "Z"):
                    out.append(int(p.name))
            except (OSError, IndexError):
                pass
    return out


def _stat(pid):
    """The fields of /proc/PID/stat from field 3 (the state) on."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()


def start_time(pid) -> str:
    return _stat(pid)[19]  # field 22


def group_members(leaders):
    """Every live process in the process groups these PIDs lead."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int(_stat(int(p.name))[2]) in leaders:  # field 5: the process group
                    out.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def listening(pids):
    """(host, port) of every TCP socket these processes listen on, as ss reports them."""
    out = subprocess.run(["ss", "-H", "-ltnp"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    found = []
    for line in out.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & set(pids):
            host, port = line.split()[3].rsplit(":", 1)
            found.append((host.strip("[]").split("%")[0], int(port)))
    return found


def is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*": every interface
        return False


def printed(proc, key):
    return next(ln for ln in proc.stdout.splitlines() if ln.startswith(key)).split()[1]


def wait_listening(port, proc, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the foreign scheduler exited"
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port} after {seconds} s")


def end(proc):
    """Stop a process this test started (its own session), by its PID."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


# ------------------------------------------------------------------ busy ports

def test_busy_scheduler_port_fails_and_joins_no_foreign_scheduler(tmp_path):
    # a foreign scheduler already listens on the port: before, start-all's own scheduler
    # exited, its workers joined the foreign one and it reported success
    port, run_dir = free_port(), tmp_path / "run"
    foreign = subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                                "--port", str(port), "--dashboard-address", "127.0.0.1:0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        wait_listening(port, foreign)
        proc = start(run_dir, "--port", port, "--dashboard-port", free_port(), *SMALL_WORKER)
        assert proc.returncode != 0, proc.stdout
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0], proc.stderr
        assert "scheduler" not in proc.stdout
        assert processes_of(run_dir) == []
        assert foreign.poll() is None  # the foreign scheduler is left alone
    finally:
        stop(run_dir)
        end(foreign)


def test_busy_dashboard_port_fails(tmp_path):
    # before, dask moved the dashboard to a random port and start-all printed the busy one
    dport, run_dir = free_port(), tmp_path / "run"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", dport))
        listener.listen()
        try:
            proc = start(run_dir, "--port", free_port(), "--dashboard-port", dport, *SMALL_WORKER)
            assert proc.returncode != 0, proc.stdout
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and f"127.0.0.1:{dport} (dashboard port)" in lines[0], proc.stderr
            assert processes_of(run_dir) == []
        finally:
            stop(run_dir)


def test_a_scheduler_that_exits_is_reported_and_everything_stopped(tmp_path):
    # the scheduler's own process exits (here: unreadable certificates): one line naming
    # the port and the reason, at once (not after the registration timeout), nothing left
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    port, run_dir = free_port(), tmp_path / "run"
    t0 = time.monotonic()
    try:
        proc = start(run_dir, "--port", port, "--dashboard-port", free_port(), *SMALL_WORKER,
                     "--tls-ca-file", junk, "--tls-cert", junk, "--tls-key", junk)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "the scheduler exited" in lines[0] and f":{port}" in lines[0], proc.stderr
        assert time.monotonic() - t0 < 50
        assert processes_of(run_dir) == [] and not list(run_dir.glob("*.pid"))
    finally:
        stop(run_dir)


# ------------------------------------------------------------------ stale pid files

@pytest.fixture
def dask_lookalike():
    """Another live process whose command line says "dask" (not started by start-all)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "dask-dummy"],
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while b"dask-dummy" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield proc
    finally:
        end(proc)


def test_stop_all_never_kills_the_process_of_a_stale_pid_file(tmp_path, dask_lookalike):
    pid, run_dir = dask_lookalike.pid, tmp_path / "run"
    run_dir.mkdir()
    args = "-c import time; time.sleep(60) dask-dummy"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, timeout=60).stdout.strip()
    stale = {
        "an older pid file (PID only)": f"{pid}\n",
        "the PID reused (another start time)": f"{pid} {int(start_time(pid)) + 1} {args}\n",
        "the PID reused (other arguments)": f"{pid} {start_time(pid)} -m dask scheduler --port 1\n",
        "the process gone": f"{gone} 12345 -m dask worker\n",
    }
    for case, content in stale.items():
        (run_dir / "scheduler.pid").write_text(content)
        proc = stop(run_dir)
        assert proc.returncode == 0 and "stopped 0" in proc.stdout, (case, proc.stdout)
        assert "stale" in proc.stdout or "no start time" in proc.stdout, (case, proc.stdout)
        assert dask_lookalike.poll() is None, case
        assert not (run_dir / "scheduler.pid").exists(), case
    # the record of this very process: it is stopped
    (run_dir / "worker-1.pid").write_text(f"{pid} {start_time(pid)} {args}\n")
    proc = stop(run_dir)
    assert proc.returncode == 0 and "stopped 1" in proc.stdout, proc.stdout
    assert dask_lookalike.wait(timeout=30) == -signal.SIGTERM


def test_stop_all_checks_the_start_time_on_the_remote_host(tmp_path, dask_lookalike):
    # a worker "on another host": ssh is a stand-in that runs the command here
    bin_dir, run_dir = tmp_path / "bin", tmp_path / "run"
    bin_dir.mkdir()
    run_dir.mkdir()
    (bin_dir / "ssh").write_text('#!/usr/bin/env bash\nwhile [ "$1" = -o ]; do shift 2; done\n'
                                 'shift\nexec bash -c "$1"\n')
    (bin_dir / "ssh").chmod(0o755)
    env = {**ENV, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    pid = dask_lookalike.pid
    (run_dir / "worker-1.host").write_text("worker1\n")
    (run_dir / "worker-1.pid").write_text(f"{pid} {int(start_time(pid)) + 1}\n")
    proc = stop(run_dir, env)
    assert "stale" in proc.stdout and "stopped 0" in proc.stdout, proc.stdout
    assert dask_lookalike.poll() is None
    assert not list(run_dir.iterdir())
    (run_dir / "worker-1.host").write_text("worker1\n")
    (run_dir / "worker-1.pid").write_text(f"{pid} {start_time(pid)}\n")
    proc = stop(run_dir, env)
    assert "stopped 1" in proc.stdout, proc.stdout
    assert dask_lookalike.wait(timeout=30) == -signal.SIGTERM


# ------------------------------------------------------------------ loopback only

@pytest.mark.parametrize("how", ["defaults", "dashboard :PORT, empty host"])
def test_nothing_listens_beyond_loopback(tmp_path, dask_lookalike, how):
    port, dport, run_dir = free_port(), free_port(), tmp_path / "run"
    run_dir.mkdir()
    extra = ["--dashboard-port", dport]
    if how != "defaults":
        # and a stale scheduler pid file naming a live "dask" process does not block the start
        (run_dir / "scheduler.pid").write_text(f"{dask_lookalike.pid}\n")
        conf = tmp_path / "cluster.conf"
        conf.write_text("scheduler_host =\n")
        extra = ["--conf", conf, "--dashboard-port", f":{dport}"]
    try:
        proc = start(run_dir, "--port", port, *extra, *SMALL_WORKER)
        assert proc.returncode == 0, proc.stderr
        assert printed(proc, "scheduler") == f"tcp://127.0.0.1:{port}"
        dashboard = printed(proc, "dashboard")
        assert dashboard == f"http://127.0.0.1:{dport}/status"
        assert urllib.request.urlopen(dashboard, timeout=30).status == 200
        leaders = {int(f.read_text().split()[0]) for f in run_dir.glob("*.pid")}
        assert len(leaders) == 2
        sockets = listening(group_members(leaders))
        assert {port, dport} <= {p for _, p in sockets}
        assert [s for s in sockets if not is_loopback(s[0])] == []
        assert dask_lookalike.poll() is None
    finally:
        stopped = stop(run_dir)
    assert stopped.returncode == 0 and "stopped 2" in stopped.stdout, stopped.stdout
    time.sleep(0.5)
    assert processes_of(run_dir) == []
    assert dask_lookalike.poll() is None


# ------------------------------------------------------------------ --help

@pytest.mark.parametrize("script", [START, STOP])
def test_help_is_a_usage_text(script):
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    assert "usage" in proc.stdout.lower()
    code = [ln for ln in proc.stdout.splitlines()
            if "$" in ln or re.match(r"\s*(fi|done|esac|set -|;;)\b", ln) or ";;" in ln]
    assert code == []

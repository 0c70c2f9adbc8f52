"""The cluster scripts, the dashboard, TLS, and a multi-host run in network namespaces."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import dask
import pytest
from distributed import default_client

from conftest import ROOT
from dcf.cluster import MMAP_THRESHOLD, WORKER_MODULES
from dcf.cluster.worker import TASK_MODULES
from dcf.run import main

pytestmark = pytest.mark.slow
SMALL = "synthetic:users=1200,items=150,ratings=12000,seed=3"
START, STOP = ROOT / "cluster" / "start-all.sh", ROOT / "cluster" / "stop-all.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(run_dir, *extra, check=True):
    env = {**os.environ, "DCF_PYTHON": sys.executable}
    proc = subprocess.run([str(START), "--run-dir", str(run_dir), "--port", str(free_port()),
                           "--dashboard-port", str(free_port()), *map(str, extra)],
                          capture_output=True, text=True, timeout=180, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr + (run_dir / "scheduler.log").read_text()
    return proc


def stop(run_dir):
    return subprocess.run([str(STOP), "--run-dir", str(run_dir)], capture_output=True, text=True,
                          timeout=120)


def printed(proc, key):
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(key))
    return line.split()[1]


def processes_of(run_dir):
    """Live processes whose command line names this run directory."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if str(run_dir) in (p / "cmdline").read_bytes().decode(errors="ignore"):
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def metrics(out):
    m = json.loads((out / "metrics.json").read_text())
    return {k: m[k] for k in ("mae", "rmse", "precision@20", "recall@20", "ndcg@20", "coverage")}


def test_start_dashboard_batch_job_stop(tmp_path):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    try:
        address, dashboard = printed(proc, "scheduler"), printed(proc, "dashboard")
        assert address.startswith("tcp://127.0.0.1:") and dashboard.startswith("http://127.0.0.1:")
        assert urllib.request.urlopen(dashboard, timeout=30).status == 200
        from distributed import Client

        with Client(address, timeout="20s") as c:
            workers = c.scheduler_info()["workers"].values()
            assert [(w["nthreads"], w["memory_limit"]) for w in workers] == [(2, 3_000_000_000)] * 2
            target = c.run(lambda: __import__("dask").config.get("distributed.worker.memory.target"))
            assert set(target.values()) == {0.4}
            assert _allocation_settings(c) == ({str(MMAP_THRESHOLD)}, 1.0)
        remote, local = tmp_path / "remote", tmp_path / "local"
        assert main(["--scheduler", address, "--data", SMALL, "--out", str(remote), "--no-progress"]) == 0
        assert main(["--data", SMALL, "--out", str(local), "--no-progress", "--workers", "1",
                     "--threads-per-worker", "1", "--memory-limit", "1GB",
                     "--dashboard-address", "127.0.0.1:0"]) == 0
        assert metrics(remote) == metrics(local)
        assert start(run_dir, check=False).returncode == 2  # already running
    finally:
        first = stop(run_dir)
    assert first.returncode == 0 and "stopped 3" in first.stdout
    time.sleep(0.5)
    assert processes_of(run_dir) == []
    again = stop(run_dir)
    assert again.returncode == 0 and "nothing to stop" in again.stdout


def _allocation_settings(c):
    """The workers' glibc mmap threshold(s) and the scheduler's worker saturation."""
    env = c.run(lambda: os.environ.get("MALLOC_MMAP_THRESHOLD_"))
    return set(env.values()), c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.WORKER_SATURATION)


def test_batch_jobs_local_cluster_has_the_scripts_settings():
    # the batch job's own cluster and start-all.sh's (cluster/dask.yaml) set the same mmap
    # threshold in the workers and the same saturation in the scheduler
    import yaml

    from dcf.cluster import client
    from dcf.config import ClusterConfig

    conf = yaml.safe_load((ROOT / "cluster" / "dask.yaml").read_text())["distributed"]
    assert conf["nanny"]["pre-spawn-environ"] == {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD}
    assert conf["scheduler"]["worker-saturation"] == 1.0
    assert conf["worker"]["preload"] == WORKER_MODULES
    cfg = ClusterConfig(workers=1, threads_per_worker=1, memory_limit="1GB", dashboard_address=None)
    with client(cfg) as c:
        assert _allocation_settings(c) == ({str(MMAP_THRESHOLD)}, 1.0)
        # Dask's own settings for the workers stay
        assert set(c.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {"65536"}
        # the workers preloaded dcf.cluster.worker, which imports the job's task modules in
        # the background (here: the fork server imported them before the worker was forked)
        assert WORKER_MODULES == ["dcf.cluster.worker"]
        deadline = time.monotonic() + 60
        while not all(set(TASK_MODULES) <= set(mods) for mods in c.run(lambda: list(sys.modules)).values()):
            assert time.monotonic() < deadline, "the task modules were not imported within 60 s"
            time.sleep(0.2)


def test_workers_flag_threads_memory_and_config_errors(tmp_path):
    run_dir = tmp_path / "run"
    proc = start(run_dir, "--workers", 1, "--threads", 1, "--memory", "1GB")
    try:
        assert "1 registered (1 threads, 1GB)" in proc.stdout
    finally:
        stop(run_dir)
    conf = tmp_path / "bad.conf"
    conf.write_text("threads = 2\nnodes = 3\n")
    bad = start(run_dir, "--conf", conf, check=False)
    assert bad.returncode == 2 and f"{conf}:2: unknown setting nodes" in bad.stderr
    conf.write_text("threads = $(touch pwned)\n")
    bad = start(run_dir, "--conf", conf, check=False)
    assert bad.returncode == 2 and not (Path.cwd() / "pwned").exists()


def _write_certs(folder: Path):
    """A self-signed certificate and key, generated for this test (PEM files)."""
    from distributed.security import Security

    sec = Security.temporary()
    (folder / "ca.pem").write_text(sec.tls_ca_file)
    (folder / "cert.pem").write_text(sec.tls_scheduler_cert)
    (folder / "key.pem").write_text(sec.tls_scheduler_key)
    return folder / "ca.pem", folder / "cert.pem", folder / "key.pem"


def test_tls_cluster_and_batch_job(tmp_path):
    pytest.importorskip("cryptography", reason="cryptography is needed to make test certificates")
    ca, cert, key = _write_certs(tmp_path)
    run_dir = tmp_path / "run"
    proc = start(run_dir, "--workers", 2, "--threads", 1, "--memory", "1GB", "--tls-ca-file", ca,
                 "--tls-cert", cert, "--tls-key", key)
    try:
        address = printed(proc, "scheduler")
        assert address.startswith("tls://127.0.0.1:")
        out = tmp_path / "out"
        assert main(["--scheduler", address, "--tls-ca-file", str(ca), "--tls-cert", str(cert),
                     "--tls-key", str(key), "--data", SMALL, "--out", str(out), "--k", "10",
                     "--no-progress"]) == 0
        assert json.loads((out / "metrics.json").read_text())["cluster"]["workers"] == 2
        # without certificates the job refuses to start
        assert main(["--scheduler", address, "--data", SMALL, "--out", str(out)]) == 2
    finally:
        stop(run_dir)


# ------------------------------------------------------------- network namespaces

HOSTS = {"master": "169.254.80.3", "worker1": "169.254.80.4", "worker2": "169.254.80.5"}


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def paper_hosts():
    """The paper's three hosts as network namespaces on one bridge (root only)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create network namespaces")
    tag = f"{os.getpid() % 10000}"
    names = {h: f"dcf{tag}-{h}" for h in HOSTS}
    bridge = f"dcfbr{tag}"
    try:
        _ip("link", "add", bridge, "type", "bridge")
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create network devices here: {exc.stderr.strip()}")
    try:
        _ip("link", "set", bridge, "up")
        for i, (host, addr) in enumerate(HOSTS.items()):
            ns, a, b = names[host], f"dcf{tag}a{i}", f"dcf{tag}b{i}"
            _ip("netns", "add", ns)
            _ip("link", "add", a, "type", "veth", "peer", "name", b)
            _ip("link", "set", a, "master", bridge)
            _ip("link", "set", a, "up")
            _ip("link", "set", b, "netns", ns)
            for cmd in (["addr", "add", f"{addr}/16", "dev", b], ["link", "set", b, "up"],
                        ["link", "set", "lo", "up"]):
                _ip("netns", "exec", ns, "ip", *cmd)
        yield names
    finally:
        for i, ns in enumerate(names.values()):
            _ip("netns", "del", ns, check=False)
            _ip("link", "del", f"dcf{tag}a{i}", check=False)
        _ip("link", "del", bridge, check=False)


def test_batch_job_across_network_namespaces(paper_hosts, tmp_path):
    def in_ns(host, *cmd, **kw):
        return subprocess.Popen(["ip", "netns", "exec", paper_hosts[host], sys.executable, *cmd],
                                stdout=open(tmp_path / f"{host}.log", "w"), stderr=subprocess.STDOUT,
                                start_new_session=True, **kw)

    master = HOSTS["master"]
    procs = [in_ns("master", "-m", "dask", "scheduler", "--host", master, "--port", "8786",
                   "--dashboard-address", f"{master}:8787")]
    try:
        for w in ("worker1", "worker2"):
            procs.append(in_ns(w, "-m", "dask", "worker", f"tcp://{master}:8786", "--host", HOSTS[w],
                               "--nthreads", "2", "--memory-limit", "3GB", "--name", w,
                               "--dashboard-address", f"{HOSTS[w]}:0"))
        out = tmp_path / "out"
        job = subprocess.run(["ip", "netns", "exec", paper_hosts["master"], sys.executable, "-m",
                              "dcf.run", "--scheduler", f"tcp://{master}:8786", "--wait-for-workers",
                              "2", "--data", SMALL,
                              "--out", str(out), "--k", "10", "--no-progress"],
                             capture_output=True, text=True, timeout=300)
        assert job.returncode == 0, job.stderr + "".join(
            (tmp_path / f"{h}.log").read_text() for h in HOSTS if (tmp_path / f"{h}.log").exists())
        cluster = json.loads((out / "metrics.json").read_text())["cluster"]
        assert cluster["scheduler"] == f"tcp://{master}:8786" and cluster["workers"] == 2
        assert cluster["threads"] == [2] and cluster["memory_limit_bytes"] == [3_000_000_000]
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _kernels_loaded():
    from dcf.kernels import codec, general, rows, sparse

    return {f"{module.__name__}.{name}": len(getattr(module, name).signatures) > 0
            for module, name in ((codec, "few_values"), (sparse, "add_rater_costs"), (codec, "column_squares"),
                                 (codec, "slice_count"), (codec, "slice_fill"), (rows, "norms_topk"),
                                 (general, "sim_rows"))}


def test_warm_up_loads_every_kernel_in_every_worker():
    # a first fit on a fresh cluster must not pay numba's loading part way through, on
    # whichever worker first runs each kernel (what the benchmarks time is the steady state)
    from distributed import Client, LocalCluster

    from dcf.experiments import warm_up

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
            Client(lc) as client:
        before = client.run(_kernels_loaded)
        assert len(before) == 2 and not any(any(v.values()) for v in before.values())
        warm_up(client)
        after = client.run(_kernels_loaded)
        assert all(all(v.values()) for v in after.values()), after


def test_memory_budget_asks_the_workers_after_trimming_and_falls_back_to_the_heartbeat(dist_client, monkeypatch):
    # a worker that read text kept 1.7 GB of freed frames in its process size: the fit's
    # method is chosen from what the workers hold after malloc_trim, asked there and then
    from dcf import cluster

    limit, threads, total, idle = cluster.memory_budget()
    workers = dist_client.scheduler_info(n_workers=-1)["workers"]
    assert (limit, threads, total) == (min(int(w["memory_limit"]) for w in workers.values()), 1,
                                       sum(int(w["memory_limit"]) for w in workers.values()))
    assert idle > 0
    monkeypatch.setattr(cluster.compute, "trimmed_memory", lambda dask_worker: 7_777_777_777)  # what the workers say
    assert cluster.memory_budget()[3] == 7_777_777_777

    async def unreachable(*args, **kwargs):
        raise OSError("no route to the workers")

    info = dist_client.scheduler_info(n_workers=-1)  # one heartbeat, held still
    monkeypatch.setattr(dist_client, "scheduler_info", lambda **kw: info)
    monkeypatch.setattr(dist_client, "_run", unreachable)  # what Client.run sends
    assert cluster.memory_budget()[3] == max(int(w["metrics"]["memory"]) for w in info["workers"].values())


def test_trimmed_memory_reports_the_worker_process_size():
    from types import SimpleNamespace

    from dcf import cluster

    worker = SimpleNamespace(monitor=SimpleNamespace(get_process_memory=lambda: 123_456_789))
    assert cluster.trimmed_memory(worker) == 123_456_789


def test_a_frame_is_gathered_part_by_part_in_order_and_a_failed_part_raises(dist_client):
    # parts come back as their tasks end (the slowest first here), in the frame's order;
    # a part that fails raises its own error at once, not after the others
    import dask
    import numpy as np
    import pandas as pd

    from dcf import cluster
    from dcf.ids import frame_from_parts

    def part(i, delay, fail=False):
        time.sleep(delay)
        if fail:
            raise ValueError(f"part {i} is broken")
        return pd.DataFrame({"user": np.arange(i * 10, i * 10 + 10), "score": np.full(10, float(i)),
                             "fallback": pd.Categorical(["none"] * 10, categories=["none", "popular"])})

    meta = part(0, 0).iloc[:0]
    parts = [dask.delayed(part, pure=False)(i, 0.6 - 0.2 * i) for i in range(3)]
    got = cluster.gather_frame(frame_from_parts(parts, meta, "parts"))
    pd.testing.assert_frame_equal(got, pd.concat([part(i, 0) for i in range(3)], ignore_index=True))
    with dask.config.set(scheduler="sync"):  # no cluster: the same frame
        pd.testing.assert_frame_equal(cluster.gather_frame(frame_from_parts(parts, meta, "parts")), got)
    slow = dask.delayed(part, pure=False)(9, 5)
    broken = frame_from_parts([slow, dask.delayed(part, pure=False)(1, 0, True)], meta, "parts")
    started = time.monotonic()
    with pytest.raises(ValueError, match="part 1 is broken"):
        cluster.gather_frame(broken)
    assert time.monotonic() - started < 4  # raised as the broken part failed, not after the slow one
    import gc

    gc.collect()
    deadline = time.monotonic() + 10  # every part let go: none held by the client (the raised
    while dist_client.refcount and time.monotonic() < deadline:  # error's traceback kept them once)
        time.sleep(0.1)
    assert not dist_client.refcount
    time.sleep(max(0.0, started + 5.5 - time.monotonic()))  # the session's workers idle again for the next test


def test_pending_tasks_counts_on_the_scheduler_and_is_none_without_a_client(dist_client, monkeypatch):
    import distributed

    from dcf import cluster

    assert cluster.pending_tasks() == 0
    futures = [dist_client.submit(time.sleep, 1.5, pure=False) for _ in range(5)]  # 2 threads: 5 queued or running
    deadline = time.monotonic() + 1.0
    while cluster.pending_tasks() != 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cluster.pending_tasks() == 5
    distributed.wait(futures, timeout=60)

    def no_client():
        raise ValueError("No clients found")

    monkeypatch.setattr(cluster.health, "default_client", no_client)
    assert cluster.pending_tasks() is None


def test_a_cluster_started_in_the_background_is_waited_for_bounded_and_always_closed():
    # the batch job starts its cluster in a thread while it imports its stages: what the
    # start raises reaches the caller, the wait has a bound, and a client that comes up
    # after the caller gave up is closed, not leaked
    from dcf.cluster import Starting, starting
    from dcf.config import ClusterConfig
    from dcf.errors import ClusterError, ConfigError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    with pytest.raises(ConfigError, match="cannot reach the scheduler"):
        with starting(ClusterConfig(scheduler=f"tcp://127.0.0.1:{port}")) as pending:
            pending.client()

    cfg = ClusterConfig(workers=1, threads_per_worker=1, memory_limit="1GB", dashboard_address=None)
    late = Starting(cfg, timeout=0.01)
    with pytest.raises(ClusterError, match="did not start within"):
        late.client()
    late.close()  # before the cluster is up: it closes itself when it comes up
    assert late._done.wait(120)
    assert late._client is None


@pytest.mark.parametrize("answer", [None, b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"garbage" * 10])
def test_a_scheduler_address_that_is_no_scheduler_fails_in_bounded_time(monkeypatch, answer):
    # a server that accepts and never answers (distributed's Client waited for ever, its own
    # timeout notwithstanding), or answers with anything else (MemoryError: Unable to
    # allocate 3.07 EiB): a one-line ConfigError within the connect bound
    import dcf.cluster.launch as launch
    from dcf.config import ClusterConfig
    from dcf.errors import ConfigError

    monkeypatch.setattr(launch, "CONNECT_TIMEOUT", 1.0)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            if answer:
                conn.sendall(answer)
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    t = time.perf_counter()
    before = dask.config.get("scheduler", None)
    try:
        with pytest.raises(ConfigError, match="cannot reach the scheduler at tcp://127.0.0.1:.*(did not answer|"
                                              "nothing answered|Timed out)"):
            launch.client(ClusterConfig(scheduler=f"tcp://127.0.0.1:{server.getsockname()[1]}"))
        assert time.perf_counter() - t < 1.0 + 5.0 + 3.0
        # what the client did as it started is undone: it is no default client (a compute
        # waited on it for ever) and Dask's scheduler setting is back (computes failed)
        assert dask.config.get("scheduler", None) == before
        with pytest.raises(ValueError):
            default_client()
        assert dask.delayed(sum)([1, 2]).compute() == 3
    finally:
        server.close()
        for conn in held:
            conn.close()


def test_thread_slots_deal_every_worker_its_threads_in_turns(monkeypatch):
    # task a of an even set goes to slot a mod len: every thread a task before any gets two
    import dcf.cluster.compute as compute

    class Client:
        def __init__(self, threads):
            self.threads = threads

        def scheduler_info(self, n_workers=-1):
            return {"workers": {a: {"nthreads": t} for a, t in self.threads.items()}}

    monkeypatch.setattr(compute, "current_client", lambda: Client({"tcp://b": 1, "tcp://a": 2, "tcp://c": 3}))
    assert compute.thread_slots() == ["tcp://a", "tcp://b", "tcp://c", "tcp://a", "tcp://c", "tcp://c"]
    monkeypatch.setattr(compute, "current_client", lambda: Client({}))
    assert compute.thread_slots() is None
    monkeypatch.setattr(compute, "current_client", lambda: None)
    assert compute.thread_slots() is None


def test_a_dashboard_port_in_use_is_said_with_the_port_served():
    # Dask serves the dashboard on another port when the one asked is taken, and says so
    # only in the logs a job silences; the job's line names the port asked
    from urllib.parse import urlsplit

    from dcf.cluster import client, dashboard_note, describe
    from dcf.config import ClusterConfig

    assert dashboard_note("127.0.0.1:8787", "http://127.0.0.1:35227/status") == " (port 8787 was in use)"
    assert dashboard_note("127.0.0.1:8787", "http://127.0.0.1:8787/status") == ""
    assert dashboard_note("127.0.0.1:0", "http://127.0.0.1:35227/status") == ""  # any port asked
    assert dashboard_note(None, None) == dashboard_note("127.0.0.1:8787", None) == ""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = ClusterConfig(workers=1, threads_per_worker=1, memory_limit="1GB", dashboard_address=f"127.0.0.1:{port}")
        with client(cfg) as c:
            link = describe(c)["dashboard"]
    assert urlsplit(link).port != port
    assert dashboard_note(cfg.dashboard_address, link) == f" (port {port} was in use)"

"""End to end, from a ratings text file to every user's Top-N: ``python -m dcf.run`` against
implicit, similaripy and surprise on the same file, each tool in its own cold process (issue 21).

    python benchmarks/e2e.py --shape paper                   # 100K users, 3.9K items, 690K ratings
    python benchmarks/e2e.py --shape 20m --timeout 600       # 1M users, 20K items, 20M ratings
    python benchmarks/e2e.py --shape ecommerce               # 300K users, 150K items, 6M ratings
    python benchmarks/e2e.py --shape custom:users=20000,items=2000,ratings=200000
    python benchmarks/e2e.py --data ratings.tsv              # any tab-separated 3 or 4 column file
    python benchmarks/e2e.py --shape ecommerce --input parquet   # the same ratings, read from Parquet
    python benchmarks/e2e.py --shape paper --rounds 3            # every tool three times, in turn; medians
    python benchmarks/e2e.py --write 20m --out /tmp/e2e/20m.tsv   # only write the file

**The file.** ``user<TAB>item<TAB>rating<TAB>timestamp`` (``--columns 3``: no timestamp),
no header, integer ids, integer ratings 1-5, written by this script's own seeded generator
(``--seed``, default 0) under ``--cache`` (default ``$TMPDIR/e2e``) when missing: item
popularity ~ rank^-``--zipf`` (1.0) over the item range with ids shuffled (id order is not
popularity), user activity log-normal (``--sigma`` 1.0, at most half the items each), no
repeated (user, item) pair, rows grouped by user. Written in chunks of about a million ratings (numpy, then
``pyarrow.csv``) to a temporary file of its own beside it and renamed, so a file that exists is whole; an existing ``--out`` is refused, never overwritten.

**The commands**, each in a fresh process (its own session: a tool past ``--timeout`` is
killed with every process it started and reported as "did not finish"):

``--measure bm25`` / ``tfidf`` run dcf's ``bm25`` / ``tfidf`` against implicit's
``BM25Recommender`` / ``TFIDFRecommender`` (similaripy and surprise: cosine only, skipped).

* ``dcf``: ``python -m dcf.run --data FILE --similarity full-cosine --neighbourhood global
  --ranking sum --k 50 --top-n 20 --out TMP --no-progress --no-baselines --dashboard-address 127.0.0.1:0``
  (plus ``--workers/--threads-per-worker/--memory-limit`` when given here; else dcf.run's
  own default cluster). Its stages come from the ``seconds`` line it prints. Note what it
  does beyond the peers: it splits the file (90 % train, 10 % test, its default), fits on
  the 90 %, predicts the test pairs and writes Parquet outputs and metrics.
* ``dcf-warm``: the same command with ``--scheduler ADDRESS`` of a cluster shaped as
  ``dcf`` gets (its default, or the flags given here) that this script started, with the
  kernels loaded in its workers, in a process of its own before the command and stopped
  after it: a job sent to a running cluster (issue 21's goal: at most 0.6x implicit's
  wall). Its ratio is ``dcf-warm/peer wall`` on each peer's row.
* ``implicit``: ``pandas.read_csv(FILE, sep="\\t", header=None, engine="pyarrow")``, a users
  x items CSR from ``pd.factorize`` codes, ``CosineRecommender(K=50, num_threads=2).fit``,
  then ``recommend(users, user_items[users], N=20, filter_already_liked_items=True)`` for
  every user in batches. ``OPENBLAS_NUM_THREADS=1``.
* ``similaripy``: the same read and CSR, ``similaripy.cosine(item_users, k=50)`` (each item's
  50 most similar), then ``similaripy.dot_product(user_items, sim, k=20,
  filter_cols=user_items)`` (Top-20 per user, rated items excluded), 2 threads.
* ``surprise`` (files of at most 1,000,000 ratings): ``KNNBasic(k=50, sim_options={"name":
  "cosine", "user_based": False})`` on ``Dataset.load_from_df``: **fit only** (its cosine is
  the co-rated one; no Top-N for every user).

Columns: ``wall_s`` launch to exit (Python start, imports, a dcf cluster's start and stop
included); ``read_s`` (dcf: ``load``), ``matrix_s``, ``fit_s`` (dcf: ``neighbours``),
``predict_s`` (dcf only), ``top_n_s``, ``output_s`` (dcf only); ``total_s`` = read + matrix +
fit + Top-N; ``peak_gb`` the sum of the peak resident memory (VmHWM) of every process of the
tool's tree (dcf: the job and its workers); ``status`` ok, the exit code with stderr's last
line, "did not finish" or "skipped" with the reason. Ratios on each peer's row, dcf over
the peer: ``wall`` (both cold, launch to exit), ``total`` (read + matrix + fit + Top-N) and
``fit``. ``--input parquet``: every tool reads a Parquet copy of the same file instead (columns
``user``, ``item``, ``rating``, ``timestamp``, int64; written once under ``--cache``; dcf.run reads it
with ``--data FILE.parquet``, the peers with ``pandas.read_parquet``); results go to
``e2e-<shape>-parquet*``. **The claims are ratios measured within one run, on one machine**: shared machines
are noisy, so compare the tools in the same run, never across runs. Writes
``e2e-<shape>.{csv,md}`` under ``--results`` (``benchmarks/results``). ``--dcf-settings default``
runs ``dcf.run`` with its own defaults instead (cosine over co-raters, the rated neighbourhood,
Top-N by the predicted rating, k = 50: a user's first run, not what the peers compute) and
writes ``e2e-<shape>-dcf-defaults.*``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _report import Sampler, environment, markdown, peak_rss_gb

HERE = Path(__file__).parent
SHAPES = {"paper": (100_000, 3_900, 690_000),
          "20m": (1_000_000, 20_000, 20_000_000),
          "ecommerce": (300_000, 150_000, 6_000_000)}
TOOLS = ("dcf", "dcf-warm", "implicit", "similaripy", "surprise")
# --measure: dcf's similarity and implicit's recommender that computes the same lists
MEASURES = {"cosine": ("full-cosine", "CosineRecommender"), "bm25": ("bm25", "BM25Recommender"),
            "tfidf": ("tfidf", "TFIDFRecommender")}
OURS = ("dcf", "dcf-warm")  # the rows the peers are compared with
SURPRISE_MAX_RATINGS = 1_000_000
CHUNK_RATINGS = 1_000_000
TOP_N_BATCH = 100_000
DCF_STAGES = {"load": "read_s", "matrix": "matrix_s", "neighbours": "fit_s", "prediction": "predict_s",
              "top-n": "top_n_s", "output": "output_s"}


# ------------------------------------------------------------------ the generator

def parse_shape(text: str) -> tuple[str, int, int, int]:
    """``paper`` / ``20m`` / ``ecommerce`` / ``custom:users=U,items=I,ratings=R`` -> (name, U, I, R)."""
    if text in SHAPES:
        return (text, *SHAPES[text])
    m = re.fullmatch(r"custom:(.*)", text)
    if not m:
        raise ValueError(f"unknown shape {text!r}: {', '.join(SHAPES)} or "
                         "custom:users=..,items=..,ratings=..")
    kw = {}
    for part in m.group(1).split(","):
        key, _, value = part.partition("=")
        if key not in ("users", "items", "ratings") or not value.replace("_", "").isdigit():
            raise ValueError(f"bad custom shape part {part!r} (users=..,items=..,ratings=..)")
        kw[key] = int(value.replace("_", ""))
    if set(kw) != {"users", "items", "ratings"}:
        raise ValueError("a custom shape needs users=, items= and ratings=")
    users, items, ratings = kw["users"], kw["items"], kw["ratings"]
    if min(users, items) < 1 or not users <= ratings <= users * max(1, items // 2):
        raise ValueError(f"custom shape: need users <= ratings <= users x items/2 ({users} x {items})")
    return (f"custom-{users}-{items}-{ratings}", users, items, ratings)


def user_counts(rng, users: int, items: int, ratings: int, sigma: float) -> np.ndarray:
    """Ratings per user: 1 + a log-normal share of the rest, each at most items/2."""
    weights = rng.lognormal(0.0, sigma, users)
    cap = max(1, items // 2)
    counts = 1 + rng.multinomial(ratings - users, weights / weights.sum())
    while (excess := int(np.clip(counts - cap, 0, None).sum())):  # move the excess to users below the cap
        counts = np.minimum(counts, cap)
        room = (counts < cap) * weights
        counts += rng.multinomial(excess, room / room.sum())
    return counts.astype(np.int64)


def distinct_draws(rng, counts: np.ndarray, cdf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For user j (0..len(counts)-1), ``counts[j]`` distinct item ranks, drawn one after the
    other by popularity, repeats skipped (weighted sampling without replacement); rows by user.

    Each round draws (with a growing surplus) for the users still short, appends to the draws
    so far and keeps each user's first ``counts[j]`` distinct items in draw order, so the
    surplus costs no bias. After 30 rounds (only for users asking for nearly all items) the
    rest are drawn uniformly."""
    n_items = len(cdf)
    owner = np.empty(0, np.int64)
    chosen = np.empty(0, np.int64)
    need = counts.copy()
    for attempt in range(60):
        short = np.flatnonzero(need)
        if not len(short):
            return owner, chosen
        extra = need[short] * (0.2 * 2 ** min(attempt, 10)) + 2
        draw_owner = np.repeat(short, (need[short] + extra).astype(np.int64))
        u = rng.random(len(draw_owner))
        draw = (np.searchsorted(cdf, u, side="right") if attempt < 30
                else (u * n_items).astype(np.int64))
        owner = np.concatenate([owner, draw_owner])
        chosen = np.concatenate([chosen, np.minimum(draw, n_items - 1)])
        _, first = np.unique(owner * n_items + chosen, return_index=True)
        first.sort()  # distinct pairs, in draw order
        order = np.argsort(owner[first], kind="stable")  # by user, draw order within
        owner, chosen = owner[first][order], chosen[first][order]
        rank = np.arange(len(owner)) - np.searchsorted(owner, owner)
        keep = rank < counts[owner]
        owner, chosen = owner[keep], chosen[keep]
        need = counts - np.bincount(owner, minlength=len(counts))
    raise RuntimeError("could not draw enough distinct items")  # pragma: no cover


def write_ratings(path: Path, users: int, items: int, ratings: int, seed: int = 0,
                  zipf: float = 1.0, sigma: float = 1.0, columns: int = 4) -> float:
    """Write the tab-separated ratings file (via a temporary file of its own in the same
    folder, then renamed); returns seconds.
    ``columns=3`` leaves out the timestamps (the same ratings, 40 % fewer bytes)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    t = time.perf_counter()
    rng = np.random.default_rng([seed, 0])
    counts = user_counts(rng, users, items, ratings, sigma)
    item_id = rng.permutation(items).astype(np.int64) + 1  # item id of each popularity rank
    pop = (np.arange(items) + 1.0) ** -zipf
    cdf = np.cumsum(pop / pop.sum())
    item_bias = rng.normal(0.0, 0.5, items)  # by rank: popular items are not better
    ends = np.searchsorted(np.cumsum(counts), np.arange(CHUNK_RATINGS, ratings, CHUNK_RATINGS))
    bounds = np.unique(np.concatenate([[0], ends + 1, [users]]).clip(0, users))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # a name of its own
    os.close(fd)
    tmp = Path(tmp)
    options = pacsv.WriteOptions(include_header=False, delimiter="\t")
    schema = pa.schema([("user", pa.int64()), ("item", pa.int64()), ("rating", pa.int8()),
                        ("timestamp", pa.int64())][:columns])
    written = 0
    try:
        with pacsv.CSVWriter(str(tmp), schema, write_options=options) as out:
            for j, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
                crng = np.random.default_rng([seed, 1, j])
                owner, rank = distinct_draws(crng, counts[lo:hi], cdf)
                user_bias = crng.normal(0.0, 0.6, hi - lo)
                score = 3.5 + user_bias[owner] + item_bias[rank] + crng.normal(0.0, 0.8, len(owner))
                cols = {"user": owner + lo + 1, "item": item_id[rank],
                        "rating": np.clip(np.rint(score), 1, 5).astype(np.int8),
                        "timestamp": crng.integers(946_684_800, 1_735_689_600, len(owner))}
                out.write_table(pa.table({f.name: cols[f.name] for f in schema}, schema=schema))
                written += len(owner)
        assert written == ratings, (written, ratings)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return time.perf_counter() - t


def data_file(args, shape: str) -> tuple[str, Path, float | None]:
    """The cached file for a shape, written when missing -> (name, path, seconds to write)."""
    name, users, items, ratings = parse_shape(shape)
    suffix = "" if (args.zipf, args.sigma) == (1.0, 1.0) else f"-z{args.zipf:g}-a{args.sigma:g}"
    suffix += "" if args.columns == 4 else f"-c{args.columns}"
    path = args.cache / f"{name}-s{args.seed}{suffix}.tsv"
    if path.exists():
        return name, path, None
    print(f"  writing {path} ({users:,} users, {items:,} items, {ratings:,} ratings) ...", flush=True)
    seconds = write_ratings(path, users, items, ratings, args.seed, args.zipf, args.sigma, args.columns)
    print(f"  written in {seconds:.1f} s ({path.stat().st_size / 1e6:.0f} MB)", flush=True)
    return name, path, seconds


def parquet_copy(path: Path, cache: Path) -> Path:
    """The text file ``path`` as one Parquet file under ``cache`` (columns ``user``, ``item``,
    ``rating``[, ``timestamp``], int64, the rows in the file's order), named by the text
    file's path, size and modification time (so it is this file's copy, never another
    file of the same name, and nothing is written beside a user's data), written once
    through a temporary file of its own and renamed, so one that exists is whole."""
    import hashlib

    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    st = path.stat()
    digest = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    out = cache / f"{path.stem}-{digest}.parquet"
    if out.exists():
        return out
    with open(path) as f:
        fields = len(f.readline().rstrip("\n").split("\t"))
    names = ["user", "item", "rating", "timestamp"][:fields]
    t0 = time.perf_counter()
    table = pcsv.read_csv(path, read_options=pcsv.ReadOptions(column_names=names),
                          parse_options=pcsv.ParseOptions(delimiter="\t"))
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"  written {out} ({out.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s", flush=True)
    return out


def count_lines(path: Path) -> int:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            n += block.count(b"\n")
    return n


# ------------------------------------------------------------------ peers (child processes)

def read_frame(path) -> pd.DataFrame:
    """The ratings of a text or Parquet file, columns 0, 1, 2[, 3] (the peers' read)."""
    if str(path).endswith(".parquet"):
        df = pd.read_parquet(path)
        return df.set_axis(range(df.shape[1]), axis=1)
    return pd.read_csv(path, sep="\t", header=None, engine="pyarrow")


def read_csr(path: str):
    """The file -> (users x items CSR, the frame, seconds to read, seconds to build the CSR)."""
    import scipy.sparse as sp

    t0 = time.perf_counter()
    df = read_frame(path)
    t1 = time.perf_counter()
    u, users = pd.factorize(df[0])
    i, items = pd.factorize(df[1])
    ui = sp.csr_matrix((df[2].to_numpy(np.float32), (u, i)), shape=(len(users), len(items)))
    ui.sort_indices()
    return ui, df, t1 - t0, time.perf_counter() - t1


def child_implicit(args) -> dict:
    import implicit.nearest_neighbours as nn

    ui, _, read_s, matrix_s = read_csr(args.data)
    name = MEASURES[args.measure][1]
    model = getattr(nn, name)(K=args.k, num_threads=args.peer_threads)
    t0 = time.perf_counter()
    model.fit(ui, show_progress=False)  # 0.7: user_items (users x items)
    t1 = time.perf_counter()
    lists = 0
    for lo in range(0, ui.shape[0], TOP_N_BATCH):
        ids = np.arange(lo, min(lo + TOP_N_BATCH, ui.shape[0]))
        rec, _ = model.recommend(ids, ui[ids], N=args.top_n, filter_already_liked_items=True)
        lists += int((rec >= 0).any(axis=1).sum())  # rows padded with -1 where fewer than N
    t2 = time.perf_counter()
    return {"what": f"{name} K={args.k}, Top-{args.top_n} rated excluded, "
                    f"{args.peer_threads} threads", "read_s": read_s, "matrix_s": matrix_s,
            "fit_s": t1 - t0, "top_n_s": t2 - t1, "lists": lists}


def child_similaripy(args) -> dict:
    import similaripy

    ui, _, read_s, matrix_s = read_csr(args.data)
    t0 = time.perf_counter()
    # rows are the vectors compared: items x users gives each item's k most similar items
    # (the item itself among them, as implicit's lists); float32 inside
    sim = similaripy.cosine(ui.T.tocsr(), k=args.k, num_threads=args.peer_threads, verbose=False,
                            format_output="csr")
    t1 = time.perf_counter()
    # score(u, i) = sum over rated j of r(u, j) * sim(j, i): the rated item's list, as implicit's
    # recommend and dcf's --ranking sum; filter_cols given a sparse matrix drops, per row, the
    # columns that row holds (the user's rated items) before the top-k, like
    # filter_already_liked_items. Users with fewer than k scored items get shorter lists.
    recs = similaripy.dot_product(ui, sim, k=args.top_n, filter_cols=ui, num_threads=args.peer_threads,
                                  verbose=False, format_output="csr")
    t2 = time.perf_counter()
    return {"what": f"cosine k={args.k} + dot_product Top-{args.top_n} rated excluded, "
                    f"{args.peer_threads} threads", "read_s": read_s, "matrix_s": matrix_s,
            "fit_s": t1 - t0, "top_n_s": t2 - t1, "lists": int((np.diff(recs.indptr) > 0).sum())}


def child_surprise(args) -> dict:
    import surprise

    t0 = time.perf_counter()
    df = read_frame(args.data)
    t1 = time.perf_counter()
    reader = surprise.Reader(rating_scale=(df[2].min(), df[2].max()))
    trainset = surprise.Dataset.load_from_df(df[[0, 1, 2]], reader).build_full_trainset()
    t2 = time.perf_counter()
    algo = surprise.KNNBasic(k=args.k, sim_options={"name": "cosine", "user_based": False}, verbose=False)
    algo.fit(trainset)
    t3 = time.perf_counter()
    return {"what": f"KNNBasic item cosine (co-rated) k={args.k}: fit only, no Top-N",
            "read_s": t1 - t0, "matrix_s": t2 - t1, "fit_s": t3 - t2}


CHILDREN = {"implicit": child_implicit, "similaripy": child_similaripy, "surprise": child_surprise}


# ------------------------------------------------------------------ the parent

class PeakRss(Sampler):
    """Peak resident memory (VmHWM) of a process and all its descendants, read every
    ``every`` seconds on a thread; ``gb`` sums each process's peak (every process seen)."""

    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(every)
        self.pid, self.peak = pid, {}

    def read(self):
        import psutil

        try:
            pids = [self.pid] + [c.pid for c in psutil.Process(self.pid).children(recursive=True)]
        except psutil.Error:
            return
        for p in pids:
            hwm = peak_rss_gb(p)
            if hwm == hwm:
                self.peak[p] = max(self.peak.get(p, 0.0), hwm)

    @property
    def gb(self) -> float:
        return sum(self.peak.values()) if self.peak else float("nan")


def launch(cmd: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run ``cmd`` in its own session; wall seconds, exit code, output, peak memory.

    The wall time ends when the tool's process exits, as a shell's command does, not when
    the last of its helpers (a fork server, a resource tracker) lets go of its output."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    exited: list = []
    waiter = threading.Thread(target=lambda: (proc.wait(), exited.append(time.perf_counter())), daemon=True)
    waiter.start()
    with PeakRss(proc.pid) as rss:
        try:
            out, err = proc.communicate(timeout=timeout)
            finished = True
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the tool and everything it started
            out, err = proc.communicate()
            finished = False
    waiter.join(timeout=10)
    wall = (exited[0] if exited else time.perf_counter()) - t
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of a tool that exited (its workers)
    except ProcessLookupError:
        pass
    return {"wall_s": wall, "rc": proc.returncode, "finished": finished, "stdout": out, "stderr": err,
            "peak_gb": rss.gb}


def failure(res: dict, timeout: float) -> str:
    if not res["finished"]:
        return f"did not finish in {timeout:g} s (stopped)"
    tail = [ln for ln in res["stderr"].strip().splitlines() if ln.strip()] or ["no output"]
    return f"exit {res['rc']}: {tail[-1].strip()[:200]}"


def parse_seconds(stdout: str) -> dict:
    """dcf.run's ``seconds  load 1.23, matrix 0.45, ...`` line -> {"read_s": 1.23, ...}."""
    m = re.search(r"^seconds\s+(.+)$", stdout, re.MULTILINE)
    if not m:
        return {}
    stages = dict(part.strip().rsplit(" ", 1) for part in m.group(1).split(","))
    return {DCF_STAGES.get(k, f"{k}_s"): float(v) for k, v in stages.items()}


def cluster_flags(args) -> list[str]:
    """dcf.run's cluster flags given here (none: its default cluster)."""
    return [x for flag in ("workers", "threads_per_worker", "memory_limit") if getattr(args, flag) is not None
            for x in ("--" + flag.replace("_", "-"), str(getattr(args, flag)))]


WARM_CLUSTER = """
import sys
from dcf.cluster import launch
from dcf.config import ClusterConfig
from dcf.experiments import warm_up
flags = dict(zip(sys.argv[1::2], sys.argv[2::2]))
cfg = ClusterConfig(dashboard_address=None, workers=int(flags.get("--workers", 2)),
                    threads_per_worker=int(flags.get("--threads-per-worker", 2)),
                    memory_limit=flags.get("--memory-limit", "3GB"))
with launch.client(cfg) as c:
    warm_up(c)
    print("ADDRESS " + c.scheduler.address, flush=True)
    sys.stdin.read()  # until the benchmark closes it
"""


class WarmCluster:
    """dcf.run's cluster (its default, or the flags given here), started and warmed in a
    process of its own before the timed command (``with WarmCluster(args) as address``),
    stopped after: what a user's ``--scheduler`` job finds running."""

    def __init__(self, args, wait: float = 180.0):
        self.cmd = [sys.executable, "-c", WARM_CLUSTER, *cluster_flags(args)]
        self.wait = wait

    def __enter__(self) -> str:
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        got: list = []
        reader = threading.Thread(target=lambda: got.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.wait)
        if not got or not got[0].startswith("ADDRESS "):
            self.__exit__()
            raise RuntimeError(f"the warm cluster did not start in {self.wait:g} s")
        return got[0].split(" ", 1)[1].strip()

    def __exit__(self, *exc) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its workers too, whatever happened
        except ProcessLookupError:
            pass


def run_dcf(args, path: Path, scheduler: str | None = None) -> dict:
    measure = MEASURES[args.measure][0]
    settings = (["--similarity", measure, "--neighbourhood", "global", "--ranking", "sum", "--k", str(args.k)]
                if args.dcf_settings == "peer" else [])  # "default": what a user's first run computes
    cmd = [sys.executable, "-m", "dcf.run", "--data", str(path), *settings, "--top-n", str(args.top_n),
           "--no-progress", "--no-baselines"]  # the peers score no baselines either
    if scheduler:
        cmd += ["--scheduler", scheduler]
        cluster = "a running, warmed cluster: " + (" ".join(cluster_flags(args)) or "the default one")
    else:
        cmd += ["--dashboard-address", "127.0.0.1:0", *cluster_flags(args)]
        cluster = " ".join(cluster_flags(args)) or "default cluster"
    how = (f"{measure} global sum k={args.k}" if args.dcf_settings == "peer" else
           "its defaults (cosine, rated neighbourhood, Top-N by prediction, k=50: not the peers' computation)")
    row = {"what": f"dcf.run {how} Top-{args.top_n} ({cluster}); fits on its 90 % split, predicts the 10 %"}
    with tempfile.TemporaryDirectory(prefix="e2e-dcf-", dir=args.cache) as tmp:
        res = launch(cmd + ["--out", str(Path(tmp) / "out")], args.timeout)
        if res["rc"] == 0:
            row.update(parse_seconds(res["stdout"]))
            recs = Path(tmp) / "out" / "recommendations.parquet"
            if recs.exists():
                row["lists"] = int(pd.read_parquet(recs, columns=["user"])["user"].nunique())
    row.update(status="ok" if res["rc"] == 0 else failure(res, args.timeout),
               wall_s=res["wall_s"], peak_gb=res["peak_gb"])
    return row


def run_peer(args, tool: str, path: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", tool, "--data", str(path), "--k", str(args.k),
           "--top-n", str(args.top_n), "--peer-threads", str(args.peer_threads), "--measure", args.measure]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    res = launch(cmd, args.timeout, env)
    lines = [ln for ln in res["stdout"].splitlines() if ln.startswith("RESULT ")]
    row = json.loads(lines[-1][len("RESULT "):]) if res["rc"] == 0 and lines else {}
    row.update(status="ok" if row else failure(res, args.timeout), wall_s=res["wall_s"],
               peak_gb=res["peak_gb"])
    return row


def run_tool(args, tool: str, path: Path, ratings: int) -> dict:
    if importlib.util.find_spec(tool.split("-")[0]) is None:
        return {"status": f"skipped: {tool} is not installed (pip install '.[bench]')"}
    if tool in ("similaripy", "surprise") and args.measure != "cosine":
        return {"status": f"skipped: {tool}'s cosine only here (--measure {args.measure})"}
    if tool == "surprise" and ratings > SURPRISE_MAX_RATINGS:
        return {"status": f"skipped: {ratings:,} ratings > {SURPRISE_MAX_RATINGS:,} "
                          "(dense item x item matrices, a Python object per rating)"}
    if tool == "dcf-warm":  # its peak_gb is the job's process only (the workers are the cluster's)
        try:
            with WarmCluster(args) as address:
                return run_dcf(args, path, address)
        except RuntimeError as exc:
            return {"status": str(exc)}
    return run_dcf(args, path) if tool == "dcf" else run_peer(args, tool, path)


def with_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """``total_s`` and, on each peer's row, dcf / peer for wall, total and fit (and the warm
    cluster's wall, ``dcf-warm/peer wall``, where that row ran)."""
    def num(col):
        return pd.to_numeric(table[col], errors="coerce") if col in table else pd.Series(np.nan, table.index)

    parts = [num(c) for c in ("read_s", "matrix_s", "fit_s", "top_n_s")]
    # only where a tool ran all four (surprise's fit-only row has no total)
    table["total_s"] = sum(p.fillna(0) for p in parts).where(parts[0].notna() & parts[2].notna()
                                                             & parts[3].notna())
    ranks = parts[3].notna()  # wall and total only against a tool that also made every Top-N
    for ours, col, label, need in (("dcf", "wall_s", "dcf/peer wall", ranks),
                                   ("dcf", "total_s", "dcf/peer total", ranks),
                                   ("dcf", "fit_s", "dcf/peer fit", True),
                                   ("dcf-warm", "wall_s", "dcf-warm/peer wall", ranks)):
        dcf = table[(table["tool"] == ours) & (table["status"] == "ok")]
        if ours != "dcf" and not len(dcf):
            continue
        ref = float(dcf[col].iloc[0]) if len(dcf) and col in dcf else np.nan
        table[label] = (ref / num(col)).where(~table["tool"].isin(OURS) & (table["status"] == "ok")
                                              & need & (num(col) > 0))
    if "lists" in table:
        table["lists"] = table["lists"].astype("Int64")
    return table


def median_run(rows: list) -> dict:
    """Of one tool's rounds, the run of median wall time among those that finished (the
    lower of the two middle ones for an even count; the first run where none finished),
    with every round's wall in ``walls``."""
    ok = sorted((r for r in rows if r.get("status") == "ok"), key=lambda r: r["wall_s"])
    chosen = dict(ok[(len(ok) - 1) // 2] if ok else rows[0])
    if len(rows) > 1:
        chosen["walls"] = " / ".join(f"{r['wall_s']:.2f}" if r.get("wall_s") is not None else "-" for r in rows)
    return chosen


def blanks(table: pd.DataFrame) -> pd.DataFrame:
    """Missing values as empty cells, for the markdown table."""
    return table.astype(object).where(table.notna(), "")


COLUMNS = ["shape", "tool", "status", "wall_s", "read_s", "matrix_s", "fit_s", "predict_s", "top_n_s",
           "output_s", "total_s", "peak_gb", "lists", "dcf/peer wall", "dcf/peer total", "dcf/peer fit",
           "dcf-warm/peer wall", "walls", "what"]


def bench_shape(args, name: str, path: Path) -> pd.DataFrame:
    if args.input == "parquet":
        path, name = parquet_copy(path, args.cache), f"{name}-parquet"
    ratings = count_lines(path)
    print(f"\nshape   : {name}: {path} ({path.stat().st_size / 1e6:.0f} MB, {ratings:,} lines); "
          f"k={args.k}, Top-{args.top_n}; load now {os.getloadavg()[0]:.2f}", flush=True)
    runs = {tool: [] for tool in args.tools}
    for r in range(args.rounds):  # the tools in turn, round after round: a host's slow minute hits each
        for tool in args.tools:
            t = time.perf_counter()
            row = {"shape": name, "tool": tool, **run_tool(args, tool, path, ratings)}
            print(f"  {tool:<10} {time.perf_counter() - t:7.1f} s  {row['status']}"
                  + (f"  (round {r + 1})" if args.rounds > 1 else ""), flush=True)
            runs[tool].append(row)
    table = with_ratios(pd.DataFrame([median_run(rows) for rows in runs.values()]))
    table = table[[c for c in COLUMNS if c in table]]
    stem = args.results / (f"e2e-{name}" if args.measure == "cosine" else f"e2e-{name}-{args.measure}")
    if args.dcf_settings == "default":  # dcf's own defaults: not the peers' computation, results apart
        stem = stem.with_name(stem.name + "-dcf-defaults")
    stem.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(markdown(blanks(table), ".3f") + "\n")
    print("\n" + markdown(blanks(table), ".3f"))
    for _, r in table[~table["tool"].isin(OURS)].iterrows():
        got = [f"{k} {r[f'dcf/peer {k}']:.2f}" for k in ("wall", "total", "fit")
               if pd.notna(r[f"dcf/peer {k}"])]
        if pd.notna(r.get("dcf-warm/peer wall")):
            got.append(f"wall on a warm cluster {r['dcf-warm/peer wall']:.2f}")
        if got:
            print(f"dcf / {r['tool']}: {', '.join(got)}")
    print(f"written: {stem}.{{csv,md}}", flush=True)
    return table


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = p.add_argument_group("data").add_mutually_exclusive_group()
    what.add_argument("--shape", nargs="+", help=f"{', '.join(SHAPES)} or custom:users=U,items=I,ratings=R "
                      "(written under --cache when missing)")
    what.add_argument("--data", type=Path, help="an existing tab-separated file (user, item, rating[, time])")
    what.add_argument("--write", metavar="SHAPE", help="only write SHAPE's file to --out")
    p.add_argument("--out", type=Path, help="the file --write writes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--zipf", type=float, default=1.0, help="item popularity ~ rank^-zipf (1.0)")
    p.add_argument("--sigma", type=float, default=1.0, help="log-normal sigma of user activity (1.0)")
    p.add_argument("--columns", type=int, choices=(3, 4), default=4,
                   help="4: user, item, rating, timestamp (default); 3: without the timestamp")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "e2e")
    p.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, of {','.join(TOOLS)}")
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--measure", choices=list(MEASURES), default="cosine",
                   help="cosine (dcf full-cosine, implicit CosineRecommender), bm25 or tfidf (implicit's)")
    p.add_argument("--input", choices=("text", "parquet"), default="text",
                   help="parquet: every tool reads a Parquet copy of the file (written once under --cache)")
    p.add_argument("--top-n", type=int, default=20)
    p.add_argument("--dcf-settings", choices=("peer", "default"), default="peer",
                   help="peer: dcf computes what the peers do (the measure, global lists, the sum ranking, "
                        "--k); default: dcf.run's own defaults, a user's first run (ratios then compare "
                        "different computations)")
    p.add_argument("--workers", type=int, help="passed to dcf.run (else its default)")
    p.add_argument("--threads-per-worker", type=int, help="passed to dcf.run (else its default)")
    p.add_argument("--memory-limit", help="passed to dcf.run (else its default)")
    p.add_argument("--peer-threads", type=int, default=2, help="threads of implicit and similaripy (2)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per tool (stopped after, reported)")
    p.add_argument("--rounds", type=int, default=1,
                   help="runs of every tool, in turn; each tool's run of median wall is reported (1)")
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(CHILDREN[args.child](args)), flush=True)
        return 0
    if args.dcf_settings == "default" and args.measure != "cosine":  # results named after a measure dcf never ran
        p.error(f"--measure {args.measure} is what dcf and the peers both compute; with --dcf-settings default "
                "dcf computes its own defaults instead: leave --measure out")
    try:
        shapes = [parse_shape(s) for s in ([args.write] if args.write else args.shape or [])]
    except ValueError as exc:
        p.error(str(exc))
    if args.write:
        if not args.out:
            p.error("--write needs --out FILE")
        if args.out.exists():
            p.error(f"--out {args.out} exists: e2e.py writes only a new file (remove it or choose another path)")
        print(environment(), flush=True)
        _, users, items, ratings = shapes[0]
        seconds = write_ratings(args.out, users, items, ratings, args.seed, args.zipf, args.sigma,
                                args.columns)
        print(f"written {args.out}: {ratings:,} ratings, {args.out.stat().st_size / 1e6:.0f} MB "
              f"in {seconds:.1f} s", flush=True)
        return 0
    if args.out:
        p.error("--out is the file of --write; results go to --results")
    if args.rounds < 1:
        p.error(f"--rounds {args.rounds}: at least 1")
    if not shapes and not args.data:
        p.error("give --shape, --data or --write")
    if args.data and not args.data.is_file():
        p.error(f"--data {args.data}: no such file")
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if not args.tools or set(args.tools) - set(TOOLS):
        p.error(f"--tools: choose from {','.join(TOOLS)}")
    args.cache.mkdir(parents=True, exist_ok=True)
    print(environment(), flush=True)
    print(f"setup   : measure {args.measure}; tools {','.join(args.tools)}; timeout {args.timeout:g} s each; dcf cluster "
          f"{'default' if args.workers is None else args.workers} workers; peers {args.peer_threads} "
          "threads, OPENBLAS_NUM_THREADS=1", flush=True)
    if args.data:
        name = re.sub(r"[^A-Za-z0-9.-]+", "-", args.data.stem).strip("-")
        bench_shape(args, name, args.data.resolve())
    for text in args.shape or []:  # data_file parses the text again (a custom shape's name is not a shape)
        name, path, _ = data_file(args, text)
        bench_shape(args, name, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

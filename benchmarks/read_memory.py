"""Peak memory and time of one text read task, as a multiple of its block (issue 19, item 4;
issue 21: its time against pyarrow's CSV reader on the same file).

Writes synthetic ratings files (one block each), then, for each parser and shape, reads
the file as ONE block in a fresh Python process through the public API
(``read_ratings(path, blocksize=<file size>).parts[0]`` under the synchronous
scheduler: the block's read and parse tasks) and reports::

    ratio = (peak RSS during the read - RSS before it) / block bytes

so the block itself counts.  ``--old-src`` names another checkout's ``src`` folder
(e.g. the code before the change) to measure its parser the same way.  A ``pyarrow``
row per shape reads the same file with ``pyarrow.csv.read_csv`` on one thread (as a
read task runs), the three columns dcf keeps, types inferred: the reference of
issue 21's "reading within 2x of pyarrow's CSV reader" (dcf's task also checks every
line, keeps line numbers and reads text ids exactly).

Shapes (about ``--mib`` MiB each):

* ``ml``     -- ``user<TAB>item<TAB>rating<TAB>timestamp``, integer ids (u.data-like);
* ``short``  -- ``user<TAB>item<TAB>rating``, integer ids (more rows per byte);
* ``text``   -- as ``ml`` with ids ``u123``/``i45`` (text ids, random, rarely repeated);
* ``skip``   -- as ``ml`` with a bad rating every 5,000 lines, read with
  ``on_bad_lines="skip"`` (every slice goes through the exact parser).

Usage::

    python benchmarks/read_memory.py --mib 64 --old-src /tmp/base/src
    python benchmarks/read_memory.py --child FILE [--skip|--pyarrow]    # one measurement, JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPES = ("ml", "short", "text", "skip")


def write_shape(path, shape: str, mib: float, seed: int = 0) -> int:
    """Write about ``mib`` MiB of ``shape`` lines (whole lines); returns the byte size."""
    rng = np.random.default_rng(seed)
    target = int(mib * 2**20)
    n = target // 12 + 1000
    u = rng.integers(1, 200_000, n).astype(str).astype(object)
    i = rng.integers(1, 30_000, n).astype(str).astype(object)
    r = rng.integers(1, 6, n).astype(str).astype(object)
    if shape == "text":
        u, i = "u" + u, "i" + i
    if shape == "skip":
        r[::5000] = "bad"
    cols = [u, i, r]
    if shape != "short":
        cols.append(rng.integers(800_000_000, 1_700_000_000, n).astype(str).astype(object))
    lines = cols[0]
    for c in cols[1:]:
        lines = lines + "\t" + c
    data = ("\n".join(lines) + "\n").encode()
    data = data[:data.rfind(b"\n", 0, target) + 1]
    Path(path).write_bytes(data)
    return len(data)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    """This process's peak RSS (``VmHWM``: unlike ``ru_maxrss``, not inherited from the
    parent that started it)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _reset_peak() -> None:
    """Set the peak RSS to the current RSS (Linux >= 4.0), where allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def child(path: str, skip: bool) -> dict:
    """Read ``path`` as one block in this process; the peak memory it took."""
    import dask

    from dcf import read_ratings

    mode = "skip" if skip else "error"
    size = os.path.getsize(path)
    tiny = Path(path).with_suffix(".warm")
    tiny.write_bytes(Path(path).read_bytes()[:4096].rsplit(b"\n", 1)[0] + b"\n")
    dask.compute(read_ratings(tiny, on_bad_lines=mode).parts[0], scheduler="sync")  # imports
    _reset_peak()
    before, peak_before = _rss(), _peak_rss()
    t = time.perf_counter()
    (frame,) = dask.compute(read_ratings(path, on_bad_lines=mode, blocksize=size).parts[0],
                            scheduler="sync")
    seconds = time.perf_counter() - t
    peak = _peak_rss()
    return {"block": size, "rows": len(frame), "rss_before": before, "maxrss_before": peak_before,
            "peak": peak, "ratio": (peak - before) / size, "seconds": seconds,
            "id_dtype": str(frame["user"].dtype)}


def child_pyarrow(path: str) -> dict:
    """Read ``path`` with pyarrow's CSV reader, one thread, the three columns dcf keeps."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    n_fields = Path(path).read_bytes()[:4096].split(b"\n", 1)[0].count(b"\t") + 1
    names = [f"f{i}" for i in range(n_fields)]

    def read(p):
        return pacsv.read_csv(p, read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
                              parse_options=pacsv.ParseOptions(delimiter="\t"),
                              convert_options=pacsv.ConvertOptions(include_columns=names[:3]),
                              memory_pool=pa.system_memory_pool())

    tiny = Path(path).with_suffix(".warm")
    tiny.write_bytes(Path(path).read_bytes()[:4096].rsplit(b"\n", 1)[0] + b"\n")
    read(tiny)
    _reset_peak()
    before, peak_before, size = _rss(), _peak_rss(), os.path.getsize(path)
    t = time.perf_counter()
    table = read(path)
    seconds = time.perf_counter() - t
    peak = _peak_rss()
    return {"block": size, "rows": table.num_rows, "rss_before": before, "maxrss_before": peak_before,
            "peak": peak, "ratio": (peak - before) / size, "seconds": seconds,
            "id_dtype": str(table.schema.field("f0").type)}


def measure(path, skip: bool = False, src: str | None = None, timeout: float = 600,
            pyarrow: bool = False) -> dict:
    """:func:`child` (or :func:`child_pyarrow`) in a fresh process (``src``: a ``src``
    folder to import dcf from)."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", str(path)] + (["--skip"] if skip else []) + \
        (["--pyarrow"] if pyarrow else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        raise RuntimeError(f"measurement failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _header(args) -> None:
    import dask
    import pandas
    import pyarrow

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"versions: python {platform.python_version()}, numpy {np.__version__}, pandas "
          f"{pandas.__version__}, pyarrow {pyarrow.__version__}, dask {dask.__version__}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print("ratio = (peak RSS (VmHWM) while reading one block - RSS before) / block bytes, "
          "fresh process each\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mib", type=float, default=64, help="block (= file) size in MiB")
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--old-src", help="a src folder with the parser to compare against")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--skip", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--pyarrow", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child_pyarrow(args.child) if args.pyarrow else child(args.child, args.skip)))
        return 0
    _header(args)
    here = str(Path(__file__).resolve().parents[1] / "src")
    parsers = [("old", args.old_src)] * bool(args.old_src) + [("new", here), ("pyarrow", None)]
    print(f"{'shape':<6} {'parser':<7} {'block MiB':>9} {'rows':>10} {'peak MiB':>9} {'ratio':>6} "
          f"{'seconds':>8}  ids")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes.split(","):
            path = Path(tmp) / f"{shape}.data"
            write_shape(path, shape, args.mib)
            for name, src in parsers:
                m = measure(path, skip=shape == "skip", src=src, pyarrow=name == "pyarrow")
                print(f"{shape:<6} {name:<7} {m['block'] / 2**20:9.1f} {m['rows']:10,d} "
                      f"{(m['peak'] - m['rss_before']) / 2**20:9.0f} {m['ratio']:6.1f} "
                      f"{m['seconds']:8.2f}  {m['id_dtype']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

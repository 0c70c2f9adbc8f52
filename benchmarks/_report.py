"""Shared output for the experiment scripts: CSV, PNG (matplotlib), HTML (bokeh), markdown.

Figures are styled like the paper's: one plain line or bar chart, labelled axes, a legend.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
from importlib.metadata import version
from pathlib import Path

import pandas as pd


def environment() -> str:
    """Machine, versions and command, one line each (printed first by every script)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=Path(__file__).parent).stdout.strip() or "?"
    except OSError:
        commit = "?"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    vers = []
    for p in ("dcf", "dask", "distributed", "numpy", "scipy", "pandas", "numba"):
        try:
            vers.append(f"{p} {version(p)}")
        except Exception:  # noqa: BLE001
            vers.append(f"{p} -")
    return "\n".join([
        f"command : {' '.join([os.path.basename(sys.executable)] + sys.argv)}",
        f"machine : {platform.node()} {platform.machine()}, {os.cpu_count()} cpus, {mem:.1f} GiB, "
        f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"versions: python {platform.python_version()}, {', '.join(vers)}, commit {commit}"])


class Sampler:
    """Calls :meth:`read` every ``every`` seconds on a thread while the ``with`` block
    runs; subclasses say what is read."""

    def __init__(self, every: float):
        self.every, self._stop = every, threading.Event()

    def read(self) -> None:
        raise NotImplementedError

    def _run(self):
        while not self._stop.is_set():
            self.read()
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def peak_rss_gb(pid="self") -> float:
    """Peak resident memory (VmHWM) of a live process, GB; NaN once it is gone (Linux)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return float("nan")


def markdown(df: pd.DataFrame, floatfmt: str = ".4f") -> str:
    cols = list(df.columns)
    fmt = lambda v: format(v, floatfmt) if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def save(df: pd.DataFrame, stem: Path, *, x: str, series: dict, title: str, xlabel: str,
         ylabel: str, kind: str = "line") -> list[Path]:
    """Write ``stem``.csv/.md/.png/.html; ``series`` maps a legend label to a column."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(markdown(df) + "\n")
    out = [stem.with_suffix(".csv"), stem.with_suffix(".md")]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        if kind == "bar":
            df.set_index(x)[list(series.values())].rename(
                columns={v: k for k, v in series.items()}).plot.bar(ax=ax, rot=0)
        else:
            for label, col in series.items():
                ax.plot(df[x], df[col], marker="o", label=label)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(stem.with_suffix(".png"), dpi=120)
        plt.close(fig)
        out.append(stem.with_suffix(".png"))
    except ImportError:
        print("matplotlib not installed: no PNG", file=sys.stderr)
    try:
        from bokeh.io import output_file, save as bsave
        from bokeh.palettes import Category10
        from bokeh.plotting import figure

        output_file(stem.with_suffix(".html"), title=title, mode="cdn")
        p = figure(title=title, x_axis_label=xlabel, y_axis_label=ylabel, width=640, height=400,
                   tools="pan,wheel_zoom,box_zoom,reset,save,hover")
        colours = Category10[10]
        for i, (label, col) in enumerate(series.items()):
            p.line(df[x], df[col], legend_label=label, color=colours[i % 10], line_width=2)
            p.scatter(df[x], df[col], legend_label=label, color=colours[i % 10], size=7)
        p.legend.location = "top_right"
        bsave(p)
        out.append(stem.with_suffix(".html"))
    except ImportError:
        print("bokeh not installed: no HTML", file=sys.stderr)
    return out

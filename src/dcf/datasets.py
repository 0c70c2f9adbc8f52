"""Built-in data: a seeded synthetic generator and MovieLens from a data directory.

``synthetic()`` defaults to the paper's shape (100,000 users, 3,900 items,
690,000 ratings of 1-5 stars).  Its ratings come from a latent-factor model
(user and item biases, 8 factors, Gaussian noise, rounded to stars), item
popularity is Zipf-like and user activity log-normal, so neighbours carry real
signal.  Users are generated in partitions on the workers, each from its own
seed, so any size streams to Parquet without passing through the client.

MovieLens files are read from ``$DCF_DATA/<name>/`` (default: the user cache
directory) and downloaded from GroupLens only when missing and allowed.  They
are never part of the repository: their licence forbids redistribution.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import dask
import numpy as np
import pandas as pd

from . import io as dio
from .errors import ConfigError, DataError
from .folders import SYNTHETIC, atomic_folder

__all__ = ["SyntheticSpec", "synthetic", "write_synthetic", "data_dir", "movielens_path", "movielens_folds",
           "item_titles", "open_source", "MOVIELENS"]

MOVIELENS = {
    "ml-100k": ("u.data", "https://files.grouplens.org/datasets/movielens/ml-100k.zip"),
    "ml-1m": ("ratings.dat", "https://files.grouplens.org/datasets/movielens/ml-1m.zip"),
}


@dataclass(frozen=True)
class SyntheticSpec:
    """Shape and seed of a synthetic ratings set (defaults: the paper's data)."""

    users: int = 100_000
    items: int = 3_900
    ratings: int = 690_000
    seed: int = 0
    factors: int = 8
    zipf: float = 0.8
    activity_sigma: float = 1.0
    noise: float = 0.5
    user_bias: float = 0.7
    item_bias: float = 0.3
    affinity: float = 1.0
    genres: int = 20
    users_per_partition: int = 50_000

    def __post_init__(self):
        if min(self.users, self.items, self.ratings) < 1:
            raise ConfigError("synthetic users, items and ratings must be positive")
        if self.ratings < self.users:
            raise ConfigError(f"synthetic ratings ({self.ratings}) must be at least the number of "
                              f"users ({self.users}): every user rates something")
        if self.ratings > self.users * max(1, self.items // 2):
            raise ConfigError("synthetic ratings exceed users x items/2: the matrix would be too dense")

    @property
    def name(self) -> str:
        return f"synthetic:users={self.users},items={self.items},ratings={self.ratings},seed={self.seed}"


def _user_counts(spec: SyntheticSpec) -> np.ndarray:
    rng = np.random.default_rng([spec.seed, 1])
    weights = rng.lognormal(0.0, spec.activity_sigma, spec.users)
    cap = max(1, spec.items // 2)
    counts = 1 + rng.multinomial(spec.ratings - spec.users, weights / weights.sum())
    for _ in range(100):  # move ratings above the cap to users below it
        excess = int(np.clip(counts - cap, 0, None).sum())
        if excess == 0:
            break
        counts = np.minimum(counts, cap)
        room = (counts < cap).astype(float) * weights
        counts += rng.multinomial(excess, room / room.sum())
    return counts.astype(np.int64)


def _item_model(spec: SyntheticSpec):
    rng = np.random.default_rng([spec.seed, 2])
    rank = rng.permutation(spec.items)  # popularity rank of each item id
    pop = (rank + 10.0) ** -spec.zipf
    centres = rng.normal(0.0, 1.0, (spec.genres, spec.factors))
    genre = rng.integers(0, spec.genres, spec.items)
    factors = (centres[genre] + 0.3 * rng.normal(0.0, 1.0, (spec.items, spec.factors))) \
        / np.sqrt(spec.factors)
    bias = rng.normal(0.0, spec.item_bias, spec.items)
    return pop / pop.sum(), factors, bias


def _generate_partition(spec: SyntheticSpec, start: int, stop: int) -> pd.DataFrame:
    counts = _user_counts(spec)
    pop, item_f, item_b = _item_model(spec)
    rng = np.random.default_rng([spec.seed, 3, start])
    n = stop - start
    c = counts[start:stop]
    users = np.repeat(np.arange(n), c)
    items = _distinct_items(rng, c, pop)
    user_f = rng.normal(0.0, 1.0, (n, spec.factors)) / np.sqrt(spec.factors)
    user_b = rng.normal(0.0, spec.user_bias, n)
    score = (3.5 + user_b[users] + item_b[items]
             + spec.affinity * np.einsum("ij,ij->i", user_f[users], item_f[items])
             + rng.normal(0.0, spec.noise, len(users)))
    rating = np.clip(np.rint(score), 1, 5)
    first_line = int(counts[:start].sum()) + 1
    return pd.DataFrame({"user": (users + start + 1).astype(np.int64), "item": (items + 1).astype(np.int64),
                         "rating": rating.astype(np.float64),
                         "line": np.arange(first_line, first_line + len(users), dtype=np.int64)})


def _distinct_items(rng, counts, pop) -> np.ndarray:
    """For each user, ``counts[u]`` distinct items drawn by popularity; rows by user."""
    n_items = len(pop)
    users = np.repeat(np.arange(len(counts)), counts)
    chosen = np.empty(0, np.int64)
    owner = np.empty(0, np.int64)
    need = counts.copy()
    for attempt in range(60):
        if not need.any():
            break
        p = pop if attempt < 40 else np.full(n_items, 1.0 / n_items)
        draw_users = np.repeat(np.arange(len(counts)), need + (need > 0) * (need // 4 + 1))
        draw = rng.choice(n_items, size=len(draw_users), p=p)
        owner = np.concatenate([owner, draw_users])
        chosen = np.concatenate([chosen, draw])
        key = np.unique(owner * n_items + chosen)  # distinct pairs, sorted by user
        owner, chosen = key // n_items, key % n_items
        rank = np.arange(len(owner)) - np.searchsorted(owner, owner)
        keep = rank < counts[owner]
        owner, chosen = owner[keep], chosen[keep]
        need = counts - np.bincount(owner, minlength=len(counts))
    if need.any():  # pragma: no cover - only for absurdly dense requests
        raise ConfigError("could not draw enough distinct items; lower the ratings per user")
    # shuffle within each user so rows are not sorted by item
    order = np.lexsort((rng.random(len(owner)), owner))
    assert np.array_equal(owner[order], users)
    return chosen[order]


def synthetic(users=100_000, items=3_900, ratings=690_000, seed=0, **kw) -> dio.Ratings:
    """The synthetic ratings as a lazily generated :class:`dcf.io.Ratings`.

    Examples
    --------
    >>> r = synthetic(users=1000, items=200, ratings=8000, seed=1)
    >>> len(r.frame.compute())
    8000
    """
    spec = SyntheticSpec(users=int(users), items=int(items), ratings=int(ratings), seed=int(seed), **kw)
    gen = dask.delayed(_generate_partition, pure=True)
    token = dask.base.tokenize(asdict(spec))
    parts = [gen(spec, lo, min(lo + spec.users_per_partition, spec.users),
                 dask_key_name=f"synthetic-{token}-{j}")
             for j, lo in enumerate(range(0, spec.users, spec.users_per_partition))]
    report = dask.delayed(_synthetic_report, pure=True)(*parts, dask_key_name=f"synthetic-report-{token}")
    return dio.Ratings(dio.RatingsSource(spec.name, "synthetic"), parts, report)


def _synthetic_report(*parts) -> dict:
    rows = sum(map(len, parts))
    return {**dio.empty_report(), "lines": rows, "rows": rows}


def write_synthetic(path, **kw) -> str:
    """Write a synthetic set to a Parquet folder, one part per user partition.

    Each part is generated and written by a worker (``part.N.parquet``, columns
    ``user, item`` int64 and ``rating`` float64); the client holds nothing.
    The folder is assembled under a temporary name and renamed when complete; an
    existing ``path`` is replaced only when it is empty or synthetic data that dcf
    wrote (:mod:`dcf.folders`), never a folder holding other files.
    """
    r = synthetic(**kw)
    write = dask.delayed(_write_part, pure=True)
    # an existing folder is replaced only when it is empty or synthetic data dcf wrote
    with atomic_folder(path, SYNTHETIC, what="write_synthetic") as staging:
        dask.compute(*[write(p, staging / f"part.{j:05d}.parquet") for j, p in enumerate(r.parts)])
    return os.fspath(path)


def _write_part(frame: pd.DataFrame, path: Path) -> int:
    out = pd.DataFrame({"user": frame["user"].astype(np.int64), "item": frame["item"].astype(np.int64),
                        "rating": frame["rating"]})
    out.to_parquet(path, index=False)
    return len(out)


# ---------------------------------------------------------------- MovieLens

def data_dir() -> Path:
    """``$DCF_DATA`` or the user cache directory (``platformdirs``)."""
    env = os.environ.get("DCF_DATA")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("dcf")) / "data"


def movielens_path(name: str = "ml-100k", file: str | None = None, download: bool = True) -> Path:
    """Path of a MovieLens ratings file, downloading the set only if missing.

    Parameters
    ----------
    name : {"ml-100k", "ml-1m"}
    file : str, optional
        A file inside the set (``u1.base``); default its full ratings file.
    download : bool
        Fetch from GroupLens when absent; ``False`` raises instead.
    """
    if name not in MOVIELENS:
        raise ConfigError(f"unknown MovieLens set {name!r}; choose from {', '.join(MOVIELENS)}")
    folder = data_dir() / name
    path = folder / (file or MOVIELENS[name][0])
    if not path.exists():
        if not download or folder.exists():
            raise DataError(str(path), f"not found (DCF_DATA={data_dir()}); put the {name} files "
                            "there or allow the download")
        _download(name, folder)
        if not path.exists():
            raise DataError(str(path), f"not in the downloaded {name} archive")
    return path


def movielens_folds(download: bool = False) -> list[tuple[Path, Path]]:
    """MovieLens 100K's five predefined folds, ``[(u1.base, u1.test), ..., (u5.base,
    u5.test)]`` (disjoint test sets covering every rating: surprise's ``PredefinedKFold``
    and the published 5-fold figures), for :func:`dcf.evaluate.cross_validate`."""
    return [(movielens_path("ml-100k", f"u{f}.base", download), movielens_path("ml-100k", f"u{f}.test", download))
            for f in range(1, 6)]


DOWNLOAD_TIMEOUT = 60  # seconds a download may wait on the server for any one read


def _download(name: str, folder: Path) -> None:
    """Fetch and unpack a MovieLens archive into ``folder`` (in a temporary sibling first,
    moved into place whole); a failure (no network, a server error, a broken archive) is a
    DataError naming the URL and the folder to put the files in instead."""
    url = MOVIELENS[name][1]
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
            archive = Path(tmp) / "data.zip"
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as resp, open(archive, "wb") as out:
                shutil.copyfileobj(resp, out)
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
            os.replace(Path(tmp) / name, folder)
    except (OSError, zipfile.BadZipFile) as exc:  # URLError, timeouts and HTTP errors are OSErrors
        raise DataError(str(folder), f"could not download {name} from {url} ({type(exc).__name__}: {exc}); "
                        f"put its files in {folder} (DCF_DATA) and run again") from None


def item_titles(name: str = "ml-100k") -> pd.Series:
    """Item id -> title for a MovieLens set already on disk."""
    folder = data_dir() / name
    if name == "ml-100k":
        t = pd.read_csv(folder / "u.item", sep="|", header=None, encoding="latin-1", usecols=[0, 1])
    else:
        t = pd.read_csv(folder / "movies.dat", sep="::", header=None, engine="python",
                        encoding="latin-1", usecols=[0, 1])
    return pd.Series(t[1].to_numpy(), index=t[0].to_numpy(), name="title")


def open_source(spec: str, **read_kw) -> dio.Ratings:
    """Open a data source named on the command line.

    ``synthetic`` or ``synthetic:users=..,items=..,ratings=..,seed=..``;
    ``movielens:ml-100k`` or ``movielens:ml-100k/u1.base``; otherwise a path
    or fsspec URL read by :func:`dcf.io.read_ratings`.
    """
    kind, _, rest = spec.partition(":")
    if kind == "synthetic":
        kw = {}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq or key not in ("users", "items", "ratings", "seed"):
                raise ConfigError(f"bad synthetic option {item!r}: use users=, items=, ratings=, seed=")
            try:
                kw[key] = int(float(value))
            except ValueError:
                raise ConfigError(f"synthetic {key}={value!r} is not a number") from None
        return synthetic(**kw)
    if kind == "movielens" and rest:
        name, _, file = rest.partition("/")
        return dio.read_ratings(movielens_path(name, file or None), **read_kw)
    return dio.read_ratings(spec, **read_kw)

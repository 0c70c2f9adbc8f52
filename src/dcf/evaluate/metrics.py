"""Quality metrics computed from outputs and truth, never from models.

All functions take pandas objects (computed outputs) and return floats in
their stated range.  Ranking metrics follow the usual offline protocol: for
each user with at least one *relevant* test item (test rating >=
``threshold``), compare that user's Top-N list with the relevant items, then
average over those users.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["mae", "rmse", "ranking_metrics", "user_metrics", "USER_METRICS", "catalogue_coverage",
           "average_popularity", "integer_ids"]


def mae(truth, prediction) -> float:
    """Mean absolute error (the paper's metric).

    .. math:: \\mathrm{MAE} = \\frac{1}{N} \\sum |r_{ui} - \\hat r_{ui}|

    >>> mae([1, 2], [2, 2])
    0.5
    """
    t, p = _pair(truth, prediction)
    with np.errstate(over="ignore", invalid="ignore"):  # ratings near 1e308: inf, reported as undefined
        return _mean(np.abs(t - p))


def rmse(truth, prediction) -> float:
    """Root mean squared error.

    .. math:: \\mathrm{RMSE} = \\sqrt{\\frac{1}{N} \\sum (r_{ui} - \\hat r_{ui})^2}

    >>> rmse([1, 3], [2, 2])
    1.0
    """
    t, p = _pair(truth, prediction)
    with np.errstate(over="ignore", invalid="ignore"):  # squares past 1e308: inf, reported as undefined
        return math.sqrt(_mean((t - p) ** 2))


def _mean(values: np.ndarray) -> float:
    """The mean of ``values`` in any order, to the bit (an exactly rounded sum,
    :func:`math.fsum`): the same job on two workers and on one cuts its predictions into
    different parts and must report the same figures; NaN for none, inf past the doubles."""
    if not len(values):
        return float("nan")
    try:
        return math.fsum(values.tolist()) / len(values)
    except OverflowError:  # a sum past the largest double (NaN and inf pass through fsum)
        return float("inf")


def _pair(truth, prediction):
    t = np.asarray(truth, dtype=np.float64)
    p = np.asarray(prediction, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"truth and prediction differ in length: {t.shape} vs {p.shape}")
    return t, p


def ranking_metrics(recommendations: pd.DataFrame, test: pd.DataFrame, n: int,
                    threshold: float = 4.0) -> dict:
    """Precision, recall, NDCG, MAP, MRR and hit rate at N over users with a relevant test
    item: the means of :func:`user_metrics`.

    Parameters
    ----------
    recommendations : DataFrame with ``user, rank, item`` (rank 1 = best)
    test : DataFrame with ``user, item, rating``
    n : int
        Cut-off; only ranks ``<= n`` count.
    threshold : float
        A test item is relevant when its rating is ``>= threshold``.

    Returns
    -------
    dict with ``precision``, ``recall``, ``ndcg``, ``map``, ``mrr``, ``hit_rate`` (each in
    [0, 1]; NaN, undefined, where no user has a relevant item) and ``users`` (how many users
    were evaluated).

    >>> recs = pd.DataFrame({"user": [1, 1], "rank": [1, 2], "item": [10, 11]})
    >>> ranking_metrics(recs, pd.DataFrame({"user": [1], "item": [11], "rating": [5.0]}), 2)["mrr"]
    0.5
    """
    users = user_metrics(recommendations, test, n, threshold)
    if users.empty:
        nan = float("nan")  # undefined (no user has a relevant test item), not zero: reported as such
        return {"precision": nan, "recall": nan, "ndcg": nan, "map": nan, "mrr": nan, "hit_rate": nan, "users": 0}
    out = {name: float(users[col].mean()) for name, col in (("precision", "precision"), ("recall", "recall"),
                                                            ("ndcg", "ndcg"), ("map", "ap"), ("mrr", "rr"))}
    out["hit_rate"] = float(users["hit"].mean())
    out["users"] = int(len(users))
    return out


USER_METRICS = ["user", "relevant", "hits", "precision", "recall", "ndcg", "ap", "rr", "hit"]


def user_metrics(recommendations: pd.DataFrame, test: pd.DataFrame, n: int, threshold: float = 4.0) -> pd.DataFrame:
    """The Top-N measures of each user with a relevant test item (rating ``>= threshold``),
    one row each (what two settings are compared on, user by user):

    .. math::
        P@N = \\frac{|L_u \\cap T_u|}{N}, \\quad
        R@N = \\frac{|L_u \\cap T_u|}{|T_u|}, \\quad
        \\mathrm{NDCG}@N = \\frac{\\sum_{r \\le N,\\, L_u[r] \\in T_u} 1/\\log_2(r+1)}
                               {\\sum_{r=1}^{\\min(N, |T_u|)} 1/\\log_2(r+1)}, \\quad
        \\mathrm{AP}@N = \\frac{1}{|T_u|} \\sum_{r \\le N,\\, L_u[r] \\in T_u} P@r, \\quad
        \\mathrm{RR}@N = \\frac{1}{\\min \\{r \\le N : L_u[r] \\in T_u\\}}

    (AP as Microsoft Recommenders' ``map_at_k`` sums it, over every relevant item, the one
    its published tables report; RR 0 and ``hit`` False where no listed item is relevant).

    Returns
    -------
    DataFrame ``user, relevant, hits, precision, recall, ndcg, ap, rr, hit`` (:data:`USER_METRICS`).
    """
    rel = test.loc[test["rating"] >= threshold, ["user", "item"]]
    if rel.empty:
        return pd.DataFrame({c: pd.Series([], dtype=object if c == "user" else np.float64) for c in USER_METRICS})
    rel, hits = _hits(recommendations, rel, n)
    n_rel = rel.groupby("user").size()
    hit_count = hits.groupby("user").size().reindex(n_rel.index, fill_value=0)
    dcg = (1.0 / np.log2(hits["rank"].to_numpy() + 1.0))
    dcg = pd.Series(dcg, index=hits["user"].to_numpy()).groupby(level=0).sum().reindex(
        n_rel.index, fill_value=0.0)
    discounts = np.cumsum(1.0 / np.log2(np.arange(2, n + 2)))
    idcg = discounts[np.minimum(n_rel.to_numpy(), n) - 1]
    hits = hits.sort_values(["user", "rank"], kind="stable")
    at_hit = (hits.groupby("user").cumcount().to_numpy() + 1) / hits["rank"].to_numpy()  # P@r at each hit
    ap = pd.Series(at_hit, index=hits["user"].to_numpy()).groupby(level=0).sum().reindex(n_rel.index, fill_value=0.0)
    first = hits.groupby("user")["rank"].min().reindex(n_rel.index)
    return pd.DataFrame({
        "user": n_rel.index.to_numpy(), "relevant": n_rel.to_numpy(), "hits": hit_count.to_numpy(),
        "precision": (hit_count / n).to_numpy(), "recall": (hit_count / n_rel).to_numpy(),
        "ndcg": dcg.to_numpy() / idcg, "ap": (ap / n_rel).to_numpy(),
        "rr": (1.0 / first).fillna(0.0).to_numpy(np.float64), "hit": hit_count.to_numpy() > 0})


def _hits(recommendations: pd.DataFrame, rel: pd.DataFrame, n: int):
    """The relevant pairs ``rel`` (distinct, ids as the lists compare them) and the listed
    ones among them: ``user, rank`` of the rows of ``recommendations`` ranked at most ``n``
    whose (user, item) pair is in ``rel``.

    Where every id is an integer, on the lists' own arrays (a copy of their columns cost
    the paper shape's job 0.2 s of its 0.35 s): where the lists come user after user in
    ascending order (the batch job's), each relevant pair is looked for among its user's
    few listed items (:func:`_listed`); else one integer key per pair and a binary search
    in the sorted keys of ``rel`` (20M rows against 1M keys: 2.1 s in all against 0.3 s
    the first way).  Else a join of the ids as text."""
    rank = recommendations["rank"].to_numpy()
    ids = {}
    for col in ("user", "item"):
        ints = integer_ids(rel[col]), integer_ids(recommendations[col])
        ids[col] = ints if ints[0] is not None and ints[1] is not None else None
    if ids["user"] is not None and ids["item"] is not None:
        rel = pd.DataFrame({"user": ids["user"][0], "item": ids["item"][0]}).drop_duplicates()
        listed, wanted = (ids["user"][1], ids["item"][1]), (rel["user"].to_numpy(), rel["item"].to_numpy())
        rows = _listed(*listed, *wanted)
        keys = _pair_keys(listed, wanted) if rows is None else None
        if keys is not None:
            found = np.sort(keys[1])
            rows = np.flatnonzero(found[np.minimum(np.searchsorted(found, keys[0]), len(found) - 1)] == keys[0])
        if rows is not None:
            rows = rows[rank[rows] <= n]
            return rel, pd.DataFrame({"user": listed[0][rows], "rank": rank[rows]})
    recs = recommendations.loc[rank <= n, ["user", "item", "rank"]]
    rel, recs = _comparable_ids(rel, recs)
    rel = rel.drop_duplicates()
    return rel, recs.merge(rel, on=["user", "item"], how="inner")[["user", "rank"]]


LISTED_CELLS = 1 << 22  # relevant pairs x list width compared at once (about 100 MB of arrays)
LISTED_WIDTH = 1024  # a longer list (a whole catalogue's): the pair-key search instead


def _listed(users, items, rel_users, rel_items):
    """The rows of the lists ``(users, items)`` whose pair is one of the distinct
    ``(rel_users, rel_items)``, ascending; None where the lists' users are not in
    ascending order (each user's rows together, as the batch job's lists come).  Each
    pair is compared with the items of its user's run of rows only, in chunks of at most
    :data:`LISTED_CELLS` comparisons; None too where a run is longer than
    :data:`LISTED_WIDTH` (one user's list of 3,000 rows made 100k pairs take 5 GB)."""
    if len(users) == 0 or len(rel_users) == 0:
        return np.zeros(0, np.int64)
    if (users[1:] < users[:-1]).any():
        return None
    starts = np.flatnonzero(np.concatenate([[True], users[1:] != users[:-1]]))
    ends = np.append(starts[1:], len(users))
    width = int((ends - starts).max())
    if width > LISTED_WIDTH:  # every pair would be compared with the longest list
        return None
    found, chunk = [], max(1, LISTED_CELLS // width)
    for lo in range(0, len(rel_users), chunk):
        u, i = rel_users[lo:lo + chunk], rel_items[lo:lo + chunk]
        run = np.minimum(np.searchsorted(users[starts], u), len(starts) - 1)
        has = users[starts[run]] == u
        rows = starts[run][:, None] + np.arange(width)
        inside = has[:, None] & (rows < ends[run][:, None])
        rows = np.where(inside, rows, 0)
        found.append(rows[inside & (items[rows] == i[:, None])])
    return np.sort(np.concatenate(found))


def _pair_keys(*pairs):
    """``user * (largest item + 1) + item`` of each ``(users, items)`` pair of int64 arrays,
    or None when an id is negative or a key would not fit in 64 bits."""
    if any(len(users) == 0 for users, _ in pairs):
        return None
    lows = [min(int(p[c].min()) for p in pairs) for c in (0, 1)]
    users, items = (max(int(p[c].max()) for p in pairs) for c in (0, 1))
    if min(lows) < 0 or (users + 1) * (items + 1) >= 2**63:
        return None
    return [u * (items + 1) + i for u, i in pairs]


def integer_ids(values) -> np.ndarray | None:
    """Ids as ``int64`` where every one is an integer within 64 bits (an integer column,
    or objects that are all Python or NumPy integers, never booleans); else None."""
    values = values if isinstance(values, pd.Series) else pd.Series(values)
    kind = values.dtype.kind if isinstance(values.dtype, np.dtype) else ""
    if kind == "i":
        return values.to_numpy(np.int64)
    if kind == "u":
        return values.to_numpy(np.int64) if len(values) == 0 or int(values.max()) < 2**63 else None
    if kind != "O" or pd.api.types.infer_dtype(values, skipna=False) != "integer":
        return None
    try:  # one C-level conversion; a value beyond 64 bits overflows
        return values.to_numpy(dtype=object).astype(np.int64)
    except OverflowError:
        return None


def _comparable_ids(a: pd.DataFrame, b: pd.DataFrame):
    """Both frames with user and item columns that compare as the ids do: integers where
    every id of the column on both sides is one (also objects holding integers), else
    text on both sides (an id ``7`` then equals ``"7"``; 20M recommendations took 10 s
    as text, 1 s as integers)."""
    fixed = {}
    for col in ("user", "item"):
        ints = integer_ids(a[col]), integer_ids(b[col])
        if ints[0] is not None and ints[1] is not None:
            fixed[col] = ints
        else:
            fixed[col] = (a[col].astype(str), b[col].astype(str))
    return (a.assign(**{c: v[0] for c, v in fixed.items()}), b.assign(**{c: v[1] for c, v in fixed.items()}))


def catalogue_coverage(recommendations: pd.DataFrame, n_items: int) -> float:
    """Share of the catalogue that appears in at least one Top-N list, in [0, 1]."""
    if n_items <= 0:
        return 0.0
    return float(recommendations["item"].nunique() / n_items)


def average_popularity(recommendations: pd.DataFrame, item_count: pd.Series, n_users: int) -> float:
    """The popularity bias of the lists (Abdollahpouri et al.'s average recommendation
    popularity, as a share): the mean, over the listed items, of the share of the training
    users who rated the item, in [0, 1]; higher means more popular lists.

    .. math:: \\mathrm{ARP} = \\frac{1}{|L|} \\sum_{i \\in L} \\frac{|U_i|}{|U|}

    ``item_count``: training ratings per item, indexed by item id; an item it lacks counts 0.

    >>> average_popularity(pd.DataFrame({"item": [1, 2]}), pd.Series({1: 4, 2: 2}), 4)
    0.75
    """
    if n_users <= 0 or len(recommendations) == 0:
        return 0.0
    counts = item_count.reindex(recommendations["item"].to_numpy()).fillna(0).to_numpy(np.float64)
    return float(np.mean(counts / n_users))

"""Deliberately naive dense NumPy versions of each dcf stage (for tests only).

Loops over pairs, written from the formulas in PAPER.md and scikit-surprise's
``knns.py``, sharing no code with dcf.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def dense(df: pd.DataFrame):
    """Ratings frame -> (R users x items with 0 = missing, sorted user ids, sorted item ids)."""
    users = np.array(sorted(df["user"].unique()))
    items = np.array(sorted(df["item"].unique()))
    R = np.zeros((len(users), len(items)))
    R[np.searchsorted(users, df["user"]), np.searchsorted(items, df["item"])] = df["rating"]
    return R, users, items


def similarity(P, measure="cosine", min_support=1, shrinkage=0.0):
    """Row-by-row similarity of the rows of dense P (0 = missing)."""
    n = P.shape[0]
    S = np.zeros((n, n))
    for x in range(n):
        for y in range(n):
            if x == y:
                S[x, y] = 1.0
                continue
            common = (P[x] > 0) & (P[y] > 0)
            c = int(common.sum())
            if c < max(min_support, 1):
                continue
            num = float(np.sum(P[x, common] * P[y, common]))
            if measure == "cosine":
                den = math.sqrt(float(np.sum(P[x, common] ** 2)) * float(np.sum(P[y, common] ** 2)))
            else:
                den = math.sqrt(float(np.sum(P[x] ** 2))) * math.sqrt(float(np.sum(P[y] ** 2)))
            if den > 0:
                S[x, y] = num / den
                if shrinkage > 0:
                    S[x, y] *= c / (c + shrinkage)
    return S


def mahout_llr_similarity(both, a, b, total):
    """Mahout's ``LogLikelihoodSimilarity``: ``1 - 1 / (1 + LLR)``, the ratio of
    ``LogLikelihood.logLikelihoodRatio(k11, k12, k21, k22)`` from integer counts, its
    entropies ``xLogX(sum) - xLogX(x1) - xLogX(x2) ...`` subtracted one by one as its
    two- and four-count overloads do, the table's two one-sided counts added first as
    dcf does (symmetric to the bit; pairs tied in exact arithmetic stay tied)."""
    k11, k12, k21, k22 = both, b - both, a - both, total - a - b + both
    k = np.arange(total + 1, dtype=np.float64)
    xlogx = k * np.log(np.where(k > 0, k, 1.0))  # NumPy's logarithms, as the kernels read them

    whole = xlogx[total]
    rows = whole - xlogx[k11 + k12] - xlogx[k21 + k22]
    cols = whole - xlogx[k11 + k21] - xlogx[k12 + k22]
    table = whole - xlogx[k11] - (xlogx[k12] + xlogx[k21]) - xlogx[k22]
    ratio = 0.0 if rows + cols < table else 2.0 * (rows + cols - table)
    return 1.0 - 1.0 / (1.0 + ratio)


def implicit_weights(P, kind, k1=1.2, b=0.75):
    """implicit's ``bm25_weight`` / ``tfidf_weight`` of dense P (entities x others, 0 =
    missing; implicit weighs ``user_items.T``, items x users): with N entities, each
    other's ``idf = log N - log(1 + raters)``; BM25 ``r (k1 + 1) / (k1 (1 - b + b L / mean L)
    + r) idf`` with L the entity's total, TF-IDF ``sqrt(r) idf``.  Written out here, entry by
    entry, in implicit's order of operations."""
    n = P.shape[0]
    rated = P > 0
    idf = np.log(float(n)) - np.log1p(rated.sum(axis=0).astype(np.float64))
    totals = P.sum(axis=1)
    W = np.zeros_like(P, dtype=np.float64)
    for x, c in zip(*np.nonzero(rated)):
        r = float(P[x, c])
        if kind == "bm25":
            length = (1.0 - b) + b * totals[x] / totals.mean()
            W[x, c] = r * (k1 + 1.0) / (k1 * length + r) * idf[c]
        else:
            W[x, c] = math.sqrt(r) * idf[c]
    return W


def measure(P, measure, min_support=1, shrinkage=0.0, significance=0.0, min_similarity=0.0, bm25_k1=1.2,
            bm25_b=0.75, alpha=0.5):
    """Every measure from its textbook formula, on the raw ratings of dense P (entities x
    others, 0 = missing), pair by pair: surprise's ``pearson`` (means over the co-raters,
    in surprise's one-pass form, which the textbook form equals up to rounding: tested),
    Sarwar's adjusted cosine (other side's means, co-rated norms), LensKit's centred cosine
    (entity's own mean, whole-vector norms), Jaccard, SAR's co-occurrence and lift, Mahout's log-likelihood similarity,
    implicit's BM25 and TF-IDF (:func:`implicit_weights`), Deshpande and Karypis' conditional
    probability; then shrinkage, Herlocker's
    significance weighting and the minimum similarity."""
    n = P.shape[0]
    rated = P > 0
    other_mean = np.array([P[rated[:, c], c].mean() if rated[:, c].any() else 0.0 for c in range(P.shape[1])])
    own_mean = np.array([P[x, rated[x]].mean() if rated[x].any() else 0.0 for x in range(n)])
    W = implicit_weights(P, measure, bm25_k1, bm25_b) if measure in ("bm25", "tfidf") else None
    S = np.eye(n)
    for x in range(n):
        for y in range(n):
            common = rated[x] & rated[y]
            c = int(common.sum())
            if x == y or c < max(min_support, 1):
                continue
            a, b = P[x, common], P[y, common]
            if measure == "pearson":  # surprise's one-pass formula, summed in order
                sa = sb = sab = saa = sbb = 0.0
                for va, vb in zip(a.tolist(), b.tolist()):
                    sa, sb, sab, saa, sbb = sa + va, sb + vb, sab + va * vb, saa + va * va, sbb + vb * vb
                num = c * sab - sa * sb
                den = math.sqrt((c * saa - sa ** 2) * (c * sbb - sb ** 2))
            elif measure == "adjusted-cosine":
                a, b = a - other_mean[common], b - other_mean[common]
                num, den = float(np.sum(a * b)), math.sqrt(float(np.sum(a ** 2)) * float(np.sum(b ** 2)))
            elif measure == "centred-cosine":
                fx, fy = P[x, rated[x]] - own_mean[x], P[y, rated[y]] - own_mean[y]
                num = float(np.sum((a - own_mean[x]) * (b - own_mean[y])))
                den = math.sqrt(float(np.sum(fx ** 2))) * math.sqrt(float(np.sum(fy ** 2)))
            elif measure == "cosine":
                num, den = float(np.sum(a * b)), math.sqrt(float(np.sum(a ** 2)) * float(np.sum(b ** 2)))
            elif measure == "full-cosine":
                num = float(np.sum(a * b))
                den = math.sqrt(float(np.sum(P[x] ** 2))) * math.sqrt(float(np.sum(P[y] ** 2)))
            elif measure == "jaccard":
                num, den = float(c), float(rated[x].sum() + rated[y].sum() - c)
            elif measure == "cooccurrence":  # SAR's: the count of co-raters itself
                num, den = float(c), 1.0
            elif measure == "lift":  # SAR's: co-raters over the product of both counts
                num, den = float(c), float(rated[x].sum()) * float(rated[y].sum())
            elif measure == "llr":  # Mahout's LogLikelihoodSimilarity over the P.shape[1] others
                num, den = mahout_llr_similarity(c, int(rated[x].sum()), int(rated[y].sum()), P.shape[1]), 1.0
            elif measure == "conditional":  # Deshpande & Karypis: |C| / (|x| |y|^alpha), not symmetric
                num, den = float(c), float(rated[x].sum()) * float(rated[y].sum()) ** alpha
            elif measure == "bm25":  # implicit's: the dot product of the BM25 weights
                num, den = float(np.sum(W[x, common] * W[y, common])), 1.0
            elif measure == "tfidf":  # implicit's: the cosine of the TF-IDF weights
                num = float(np.sum(W[x, common] * W[y, common]))
                den = math.sqrt(float(np.sum(W[x] ** 2))) * math.sqrt(float(np.sum(W[y] ** 2)))
            else:
                raise ValueError(measure)
            if den <= 1e-12 * max(1.0, abs(num)):  # zero up to rounding: no similarity
                continue
            s = num / den
            s *= c / (c + shrinkage) if shrinkage > 0 else 1.0
            s *= min(c, significance) / significance if significance > 0 else 1.0
            S[x, y] = 0.0 if 0 < min_similarity and s < min_similarity else s
    return S


def biases(R, epochs=10, reg_u=15.0, reg_i=10.0):
    """Surprise's baseline_als, loop for loop: (mu, bu, bi) of dense R (0 = missing)."""
    mu = R[R > 0].mean()
    bu, bi = np.zeros(R.shape[0]), np.zeros(R.shape[1])
    for _ in range(epochs):
        for i in range(R.shape[1]):
            us = np.flatnonzero(R[:, i] > 0)
            bi[i] = sum(R[u, i] - mu - bu[u] for u in us) / (reg_i + len(us))
        for u in range(R.shape[0]):
            its = np.flatnonzero(R[u] > 0)
            bu[u] = sum(R[u, i] - mu - bi[i] for i in its) / (reg_u + len(its))
    return mu, bu, bi


def pearson_baseline(rated, resid, min_support=1, shrinkage=0.0):
    """Surprise's pearson_baseline between the rows of ``resid`` (residuals r - b, any
    sign, 0 allowed) where ``rated`` marks the entries that exist."""
    n = rated.shape[0]
    S = np.eye(n)
    for x in range(n):
        for y in range(n):
            common = rated[x] & rated[y]
            c = int(common.sum())
            if x == y or c < max(min_support, 2):
                continue
            den = math.sqrt(float(np.sum(resid[x, common] ** 2)) * float(np.sum(resid[y, common] ** 2)))
            if den > 0:
                S[x, y] = float(np.sum(resid[x, common] * resid[y, common])) / den
                if shrinkage > 0:
                    S[x, y] *= (c - 1) / (c - 1 + shrinkage)
    return S


def topk(S, k):
    """Per row: the k largest positive similarities, self excluded, ties by lower id."""
    n = S.shape[0]
    idx = np.full((n, k), -1)
    sim = np.zeros((n, k))
    for x in range(n):
        cands = sorted(((-S[x, j], j) for j in range(n) if j != x and S[x, j] > 0))[:k]
        for t, (negs, j) in enumerate(cands):
            idx[x, t], sim[x, t] = j, -negs
    return idx, sim


def predict(R, S, pairs, *, based="item", k=40, prediction="weighted", neighbourhood="rated",
            min_k=1, table=None, bias=None, amplification=1.0):
    """Surprise's estimate() loop for each (user row, item col) pair; -1 = unknown.

    With ``amplification`` rho, the neighbours are chosen by s and weigh s ** rho.

    Returns (prediction, neighbours used, fallback name) per pair, clipped to
    the rating range of R.
    """
    lo, hi = R[R > 0].min(), R[R > 0].max()
    gmean = R[R > 0].mean()
    P = R.T if based == "item" else R  # entities x others
    means = np.array([row[row > 0].mean() if (row > 0).any() else 0.0 for row in P])
    if prediction == "baseline":  # KNNBaseline: (mu + bu) + bi, neighbours' residuals
        mu, bu, bi = bias
        bx, by = (bi, bu) if based == "item" else (bu, bi)
    out = []
    for u, i in pairs:
        if prediction == "baseline" and (u < 0 or i < 0):
            est = mu + (bu[u] if u >= 0 else 0.0) + (bi[i] if i >= 0 else 0.0)
            out.append((float(np.clip(est, lo, hi)), 0, "baseline"))
            continue
        if u < 0 or i < 0:
            out.append((float(np.clip(gmean, lo, hi)), 0, "global_mean"))
            continue
        x, y = (i, u) if based == "item" else (u, i)
        rated = [j for j in range(P.shape[0]) if P[j, y] > 0]
        if neighbourhood == "global":
            listed = set(table[x][table[x] >= 0].tolist())
            rated = [j for j in rated if j in listed]
        cands = sorted(((-S[x, j], j) for j in rated))[:k] if neighbourhood == "rated" else \
            sorted(((-S[x, j], j) for j in rated))
        used = [((-negs) ** amplification, j) for negs, j in cands if -negs > 0]
        if prediction == "baseline":
            est = mu + bu[u] + bi[i]
            if len(used) >= max(min_k, 1):
                est += sum(s * (P[j, y] - (mu + bx[j] + by[y])) for s, j in used) / sum(s for s, _ in used)
            out.append((float(np.clip(est, lo, hi)), len(used), "none" if len(used) >= max(min_k, 1)
                        else "baseline"))
            continue
        if len(used) < max(min_k, 1):
            if prediction == "weighted":
                out.append((float(np.clip(gmean, lo, hi)), len(used), "global_mean"))
            else:
                out.append((float(np.clip(means[x], lo, hi)), len(used),
                            "item_mean" if based == "item" else "user_mean"))
            continue
        ssum = sum(s for s, _ in used)
        if prediction == "weighted":
            est = sum(s * P[j, y] for s, j in used) / ssum
        else:
            est = means[x] + sum(s * (P[j, y] - means[j]) for s, j in used) / ssum
        out.append((float(np.clip(est, lo, hi)), len(used), "none"))
    return out


def recommend(R, table, n, *, based="item", prediction="weighted", min_k=1, bias=None, amplification=1.0,
              allow=None, keep_rated=False):
    """Top-n per user by the global-rule prediction; ties and fill-in by popularity.
    Each listed neighbour weighs s ** amplification.  Only the columns in ``allow`` (None:
    all) are candidates; rated ones too where ``keep_rated``.

    Returns a list per user of (item col, score or None if filled in).
    """
    lo, hi = R[R > 0].min(), R[R > 0].max()
    P = R.T if based == "item" else R
    means = np.array([row[row > 0].mean() for row in P])
    item_means = np.array([c[c > 0].mean() for c in R.T])
    pop = (R > 0).sum(0)
    popularity = sorted(range(R.shape[1]), key=lambda i: (-pop[i], i))
    prank = {i: r for r, i in enumerate(popularity)}
    out = []
    for u in range(R.shape[0]):
        scored, unscored = [], []
        for i in range(R.shape[1]):
            if (R[u, i] > 0 and not keep_rated) or (allow is not None and i not in allow):
                continue
            x, y = (i, u) if based == "item" else (u, i)
            nbrs = [(table[1][x, t] ** amplification, table[0][x, t]) for t in range(table[0].shape[1])
                    if table[0][x, t] >= 0 and P[table[0][x, t], y] > 0]
            if len(nbrs) >= max(min_k, 1):
                ssum = sum(s for s, _ in nbrs)
                if prediction == "weighted":
                    est = sum(s * P[j, y] for s, j in nbrs) / ssum
                elif prediction == "baseline":
                    mu, bu, bi = bias
                    bx = bi if based == "item" else bu
                    by = bu if based == "item" else bi
                    est = mu + bu[u] + bi[i] + sum(s * (P[j, y] - (mu + bx[j] + by[y])) for s, j in nbrs) / ssum
                else:
                    est = means[x] + sum(s * (P[j, y] - means[j]) for s, j in nbrs) / ssum
                scored.append((-float(np.clip(est, lo, hi)), prank[i], i))
            else:
                unscored.append((prank[i], i))
        ranked = [(i, -s) for s, _, i in sorted(scored)] + \
                 [(i, None) for _, i in sorted(unscored)]
        out.append(ranked[:n])
    return out, item_means


def triplets(rows, cols, vals, n_rows, n_cols, lines):
    """A block from rating triplets the plain way: per (row, col) pair, the value of the
    earliest line (the first given between equal lines) is kept; each later rating is
    an exact duplicate (same value) or a conflict ``(row, col, kept line, its line,
    its value)``, in row, column, line order. Returns ``(dense, duplicates, conflicts)``."""
    dense = np.zeros((n_rows, n_cols))
    seen: dict = {}
    for p in sorted(range(len(rows)), key=lambda p: (rows[p], cols[p], lines[p], p)):
        seen.setdefault((rows[p], cols[p]), []).append(p)
    duplicates, conflicts = 0, []
    for (r, c), ps in seen.items():
        kept = ps[0]
        dense[r, c] = vals[kept]
        for p in ps[1:]:
            if vals[p] == vals[kept]:
                duplicates += 1
            else:
                conflicts.append((r, c, lines[kept], lines[p], vals[p]))
    return dense, duplicates, sorted(conflicts, key=lambda t: t[:2] + (t[3],))

"""Baseline predictors :math:`b_{ui} = \\mu + b_u + b_i`, fitted as a task graph.

The biases are scikit-surprise's ``BaselineOnly`` with ``method="als"`` (its
default, after MyMediaLite): ``n_epochs`` rounds of

.. math::
    b_i = \\frac{\\sum_{u \\in U_i} (r_{ui} - \\mu - b_u)}{\\lambda_i + |U_i|}, \\qquad
    b_u = \\frac{\\sum_{i \\in I_u} (r_{ui} - \\mu - b_i)}{\\lambda_u + |I_u|}

starting from :math:`b_u = 0`, with :math:`\\lambda_u = 15`, :math:`\\lambda_i = 10`,
10 epochs by default.  One epoch is one pass over the user-row blocks for the
item sums (summed in one task) and one for the user biases (per block), so the
ratings never leave the workers; only the two bias vectors travel.

The biases serve two options of :class:`dcf.model.KNN`: the
``pearson-baseline`` similarity (cosine of the residuals :math:`r_{ui} - b_{ui}`
over co-raters, :func:`residuals`) and the ``baseline`` prediction
(surprise's ``KNNBaseline``).
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from .blocks import concat_rows, concatenate

__all__ = ["fit_biases", "fold_in_user_biases", "residuals"]


def fit_biases(by_user: da.Array, item_count, global_mean, n_epochs: int = 10, reg_user: float = 15.0,
               reg_item: float = 10.0, token: str = ""):
    """``(user_bias, item_bias)`` as Delayed float64 arrays (ALS, see the module doc).

    Parameters
    ----------
    by_user : dask array (users x items), CSR chunks in user-row blocks
    item_count : (items,) array or Delayed: ratings per item (``RatingMatrix.item_count``)
    global_mean : float or Delayed
    """
    blocks = by_user.to_delayed(optimize_graph=False).ravel().tolist()
    rows = by_user.chunks[0]
    n_items = int(by_user.shape[1])
    token = token or dask.base.tokenize(by_user, global_mean, n_epochs, reg_user, reg_item)
    bu = [dask.delayed(np.zeros, pure=True)(r, dask_key_name=f"baseline-user-{token}-init-{j}")
          for j, r in enumerate(rows)]
    bi = None
    item_part = dask.delayed(_item_part, pure=True)
    user_part = dask.delayed(_user_part, pure=True)
    for e in range(int(n_epochs)):
        parts = [item_part(b, u, global_mean, n_items, dask_key_name=f"baseline-item-part-{token}-{e}-{j}")
                 for j, (b, u) in enumerate(zip(blocks, bu))]
        bi = dask.delayed(_item_bias, pure=True)(item_count, float(reg_item), *parts,
                                                 dask_key_name=f"baseline-item-{token}-{e}")
        bu = [user_part(b, bi, global_mean, float(reg_user), dask_key_name=f"baseline-user-{token}-{e}-{j}")
              for j, b in enumerate(blocks)]
    if bi is None:  # no epoch: all zeros
        bi = dask.delayed(np.zeros, pure=True)(n_items, dask_key_name=f"baseline-item-{token}-init")
    user_bias = dask.delayed(concatenate, pure=True)(*bu, dask_key_name=f"baseline-user-{token}")
    return user_bias, bi


def residuals(X: da.Array, global_mean, row_bias, col_bias, rows_are_entities: bool) -> da.Array:
    """``X`` with every stored rating replaced by :math:`r - b_{ui}`, same structure
    (a residual of exactly 0 stays a stored entry: it still means "rated").

    Summed as surprise's ``pearson_baseline`` sums it, :math:`r - ((\\mu + b_y) + b_x)`
    with x the entity compared and y the other side, so ``rows_are_entities``
    says which of the block's rows (``row_bias``) and columns (``col_bias``) is x.
    """
    blocks = X.to_delayed(optimize_graph=False).ravel().tolist()
    bounds = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
    token = dask.base.tokenize(X, global_mean, row_bias, col_bias, rows_are_entities)
    part = dask.delayed(_residual_block, pure=True)
    out = [part(b, int(bounds[j]), global_mean, row_bias, col_bias, bool(rows_are_entities),
                dask_key_name=f"baseline-residuals-{token}-{j}") for j, b in enumerate(blocks)]
    return concat_rows(out, bounds, int(X.shape[1]), "baseline-residual-rows")


def fold_in_user_biases(history, item_bias, global_mean, reg_user: float = 15.0):
    """User biases of new rating histories (users x items CSR) given fitted item biases:
    the ALS user step, so a fitted user's own ratings give back its fitted bias."""
    return _user_part(history, np.asarray(item_bias), float(global_mean), float(reg_user))


def _row_of(b):
    return np.repeat(np.arange(b.shape[0]), np.diff(b.indptr))


def _item_part(b, bu, mu, n_items):
    # surprise: dev_i += r - global_mean - bu[u]
    return np.bincount(b.indices, weights=b.data - mu - bu[_row_of(b)], minlength=n_items)


def _item_bias(counts, reg, *parts):
    return np.sum(parts, axis=0) / (reg + np.asarray(counts))


def _user_part(b, bi, mu, reg):
    dev = np.bincount(_row_of(b), weights=b.data - mu - bi[b.indices], minlength=b.shape[0])
    return dev / (reg + np.diff(b.indptr))


def _residual_block(b, row0, mu, row_bias, col_bias, rows_are_entities):
    rb = np.asarray(row_bias)[row0 + _row_of(b)]
    cb = np.asarray(col_bias)[b.indices]
    x, y = (rb, cb) if rows_are_entities else (cb, rb)
    out = b.copy()
    out.data = b.data - ((mu + y) + x)
    return out

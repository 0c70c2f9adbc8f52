"""A fitted model from the checked parts of a saved one, on the current scheduler.

Every graph key derives from the model's token (:func:`~dcf.store.meta.model_token`),
so models saved from the same ratings, loaded into one client, never share keys.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp

from .. import kernels
from ..blocks import concat_rows
from ..decay import Decay
from ..fitted import FittedState, fitted_state
from ..matrix import from_user_blocks
from ..neighbours import NeighbourTable
from ..similarity import row_block_format

__all__ = ["assemble"]


def assemble(model, meta, matrix_parts, table_parts, token) -> FittedState:
    """The fitted state of ``model`` (an unfitted estimator of the saved parameters) from
    checked parts, on the current scheduler, keys from ``token``."""

    users, items, ratings = matrix_parts
    idx, sim, rows = table_parts
    n_users, n_items = meta["shape"]
    ub, ib = np.asarray(meta["user_bounds"]), np.asarray(meta["item_bounds"])
    blocks = [_share(ratings[ub[b]:ub[b + 1]], f"saved-user-block-{token}-{b}") for b in range(len(ub) - 1)]
    report = _share(meta["report"], f"saved-report-{token}")
    matrix = from_user_blocks(users, items, blocks, ub, ib, [report], meta["source"], token)
    if meta.get("reference_time") is not None:  # the decay its values were decayed with
        matrix.decay = Decay(float(model.half_life), float(meta["reference_time"]))
    n, bounds = (n_items, ib) if model.based == "item" else (n_users, ub)
    chunks = (tuple(np.diff(bounds).tolist()), (idx.shape[1],))
    idx_d = da.from_array(idx, chunks=chunks, name=f"saved-idx-{token}")
    sim_d = da.from_array(sim, chunks=chunks, name=f"saved-sim-{token}")
    W = da.map_blocks(kernels.neighbour_matrix, idx_d, sim_d, n, dtype=np.float64,
                      chunks=(idx_d.chunks[0], (n,)), meta=sp.csr_matrix((0, 0)),
                      name=f"saved-neighbour-matrix-{token}")
    table = NeighbourTable(idx_d, sim_d, W, int(meta["fitted_k"])).persist()
    whole = None
    if rows is not None:
        whole = concat_rows(
            [_share(row_block_format(rows[bounds[a]:bounds[a + 1]]), f"saved-sim-rows-{token}-{a}")
             for a in range(len(bounds) - 1)], bounds, n, "saved-similarity-rows").persist()
    return fitted_state(model, matrix.persist(), table, whole, None, meta["global_mean"], meta["rating_range"],
                        token)


def _share(obj, key: str):
    """A Delayed holding ``obj`` (one graph key; sent to the cluster once)."""
    return dask.delayed(obj, pure=True, name=key)

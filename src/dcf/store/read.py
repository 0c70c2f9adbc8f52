"""Reading a saved model: :func:`load`, the order in which a folder is checked.

Nothing in a model folder is trusted until it is checked: the metadata's every field
(types, ranges, cross-field consistency), every file's kind, name, size and checksum,
and every array's header against the shapes the metadata declares, all before any
array is allocated.  The checksums alone are not enough: whoever edits a file can
record its new size and SHA-256 too, so each structural check stands on its own.
"""

from __future__ import annotations

from pathlib import Path

from .arrays import check_summary, csr, csr_layout, neighbour_table, read_npz, table_layout
from .assemble import assemble
from .files import check_file, read_ids
from .meta import META, check_meta, model_token, read_meta

__all__ = ["load"]


def load(path, classes: dict):
    """Read a model saved by :func:`~dcf.store.save`; returns a fitted estimator of one of ``classes``.

    ``classes`` maps the saved class name to the estimator class (``dcf.load``, in
    :mod:`dcf.model`, passes ``ItemKNN``, ``UserKNN`` and ``KNN``), so this package
    needs nothing of the estimator's and the two do not import each other.

    Every field of the metadata, every file and every array header is checked
    before anything is allocated or sent to the cluster (see :mod:`dcf.store`);
    the loaded model's graph keys derive from the whole metadata, so models
    saved from the same ratings never share keys.

    Raises
    ------
    DataError
        The folder or a file in it is missing, truncated, corrupt, not a dcf
        model, inconsistent, or written by a newer format version.
    """
    folder = Path(path)
    meta = read_meta(folder)
    model = check_meta(meta, folder / META, classes)
    for name, want in meta["files"].items():
        check_file(folder / name, want)
    n_users, n_items = meta["shape"]
    n = n_items if model.based == "item" else n_users
    layouts = {"ratings.npz": csr_layout(n_users, n_items),
               "neighbours.npz": table_layout(n, meta["fitted_k"])}
    if "similarity.npz" in meta["files"]:
        layouts["similarity.npz"] = csr_layout(n, n)
    arrays = {name: read_npz(folder / name, layout, read=name != "similarity.npz"
                             or model.neighbourhood == "rated")
              for name, layout in layouts.items()}
    users = read_ids(folder / "users.parquet", n_users)
    items = read_ids(folder / "items.parquet", n_items)
    ratings = csr(arrays["ratings.npz"], folder / "ratings.npz", (n_users, n_items))
    check_summary(ratings, meta, folder / META)
    idx, sim = neighbour_table(arrays["neighbours.npz"], folder / "neighbours.npz", n)
    rows = (csr(arrays["similarity.npz"], folder / "similarity.npz", (n, n))
            if model.neighbourhood == "rated" else None)
    return model.set_state(assemble(model, meta, (users, items, ratings), (idx, sim, rows), model_token(meta)))

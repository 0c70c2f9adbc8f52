"""Saved models: a documented, versioned folder format that is not pickle.

``model.save(path)`` writes a folder; ``dcf.load(path)`` reads it back into a
fitted model that serves ``predict``, ``recommend`` and ``neighbours`` on the
current cluster (or the local scheduler) without refitting::

    path/
      dcf-model.json    format name and version, dcf version, parameters,
                        shapes, block bounds, global mean, rating range, the
                        cleaning report, and the size and SHA-256 of every file
      users.parquet     one column ``id``: raw user ids in code order
      items.parquet     one column ``id``: raw item ids in code order
      ratings.npz       the training matrix, users x items CSR
                        (``data`` float64, ``indices`` int32/64, ``indptr``)
      neighbours.npz    ``idx`` (n, k) int64 (-1 = none), ``sim`` (n, k) float64
      similarity.npz    whole similarity rows as CSR (``rated`` neighbourhood only)

Arrays are read with ``allow_pickle=False`` and the metadata is JSON, so
loading a model never executes anything from the file.  Nothing in the folder
is trusted until checked, and every failure is a :class:`~dcf.errors.DataError`
naming the file (and field), raised before anything large is allocated:

* ``dcf-model.json`` is a regular file (not a link, FIFO or device) of at most
  64 MiB; a newer ``format_version`` is refused with the version found.
* Every field is type- and range-checked: the class and *all* its parameters
  (then the estimator's own checks), ``based`` agreeing with them, ``shape``
  two integers in 1..2**31-1, block bounds integers rising strictly from 0 to
  the shape, ``k <= fitted_k <= max(k, n)``, a finite ``global_mean``, a
  ``rating_range`` low <= high, ``report`` an object, ``source`` a string or
  null, ``files`` plain known names (no paths) with ``bytes`` and ``sha256``.
* Each listed file is a regular file in the folder (``lstat`` before opening:
  no symbolic link, even one pointing inside, no FIFO or device) of the
  recorded size and SHA-256.
* The checksums can be forged along with a file, so the structure is checked
  on its own: each ``.npz`` holds exactly the expected members, stored
  uncompressed (as :func:`save` writes them), each ``.npy`` header's dtype and
  shape as the metadata implies, its zip entry exactly the bytes the header
  implies (no zip bombs, no headers claiming terabytes); the id files' row
  counts (Parquet footer) match the shape and their ids are distinct and in
  code order; the CSR matrices are valid with finite values; neighbour ids lie
  in range; ``global_mean`` and ``rating_range`` are those of the saved ratings.

A loaded model's graph keys derive from the SHA-256 of its whole metadata
(:func:`model_token`), so models saved from the same ratings, loaded into one
client, never share keys.  Version 1 is the current format; no field was added.
Writing goes to a staging folder that is renamed into place when complete,
so an interrupted save leaves the previous model (or none), never half of one.

Each step lives in its own module:

- :mod:`~dcf.store.write` -- :func:`save`: gathering the arrays and metadata, the staged write;
- :mod:`~dcf.store.read` -- :func:`load`: the order in which a folder is checked and read;
- :mod:`~dcf.store.meta` -- ``dcf-model.json``: the format constants and limits, reading it,
  checking every field and the parameters against the classes, :func:`model_token`;
- :mod:`~dcf.store.files` -- opening regular files only, size and SHA-256, the id files;
- :mod:`~dcf.store.arrays` -- ``.npz`` member headers and layouts, reading arrays, the CSR
  and neighbour-table checks, ``global_mean`` and ``rating_range`` against the ratings;
- :mod:`~dcf.store.assemble` -- the fitted model built from the checked parts.
"""

from __future__ import annotations

from .files import sha256
from .meta import FORMAT, FORMAT_VERSION, META, model_token
from .read import load
from .write import save

__all__ = ["FORMAT", "FORMAT_VERSION", "META", "load", "model_token", "save", "sha256"]

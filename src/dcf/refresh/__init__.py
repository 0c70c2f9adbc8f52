"""Incremental refresh: a fitted model plus new ratings, without recomputing every similarity.

``model.refresh(new)`` returns the model that ``fit`` on the old ratings with the new ones
merged in would give (a pair already rated takes the new value; new users and items join
the vocabulary), recomputing only the similarity rows the new ratings can change:

* The rating matrix is merged block by block from the old CSR blocks, renumbered to the
  new vocabulary, and the batch: the old ratings are not read or checked again.  With
  ids other than integers the old ratings go through frames of raw ids instead.  Both
  give the blocks ``fit`` builds.  Means, counts and baseline biases are recomputed.
* A similarity row of entity ``e`` (an item, for item-based CF) is recomputed only when
  a changed rating can reach it.  Let the changed ratings touch the entities ``E`` and
  the others ``O`` (the users, for item-based CF).
  - The co-rated measures (``cosine``, ``pearson``, ``adjusted-cosine``, ``cooccurrence``) read only the
    ratings of the co-raters.  Row ``e`` changes only when a user in ``O`` rated ``e``.
    For ``adjusted-cosine``, only these users' means move.
  - ``full-cosine``, ``centred-cosine``, ``jaccard``, ``lift`` and ``llr`` also read a whole entity's norm
    (its mean, its count), which moves for the entities in ``E``.  An entity co-rated
    with one in ``E`` by an untouched user keeps its row except for the columns ``E``.
    Those columns are recomputed alone: the same sums, in the same order, that a whole
    row takes.  Then its top-k list is merged again.  A list that loses a neighbour can
    have an unknown successor; that row is recomputed whole.  Whole rows (the ``rated``
    neighbourhood) take the new columns and their top-k is taken again.
  - ``pearson-baseline`` reads the baseline biases, which every new rating moves: a
    full refit.  ``llr`` reads the number of others (users, for item-based CF): a
    batch that brings a new one is a full refit, one that does not is patched as
    ``lift`` is.
* Every other row is copied from the old model, its neighbour ids renumbered to the
  new vocabulary.  The vocabulary is sorted, so renumbering keeps the ties' order.  An
  untouched entity has no similarity with a new entity: they share no rater.

The result equals a refit bit for bit (``tests/test_refresh.py`` checks it measure by
measure).  It needs the ``rows`` similarity method (one copy of the ratings per worker,
:func:`dcf.similarity.method`).  Where the merged ratings call for ``tiles``, it refits,
and ``refresh_report_`` says so.

Left out: deleting ratings (a deletion is not a rating; refit without them).

The package: :mod:`~dcf.refresh.core` (:func:`refresh`: what changed, which rows it
reaches, the new table), :mod:`~dcf.refresh.ratings` (the merged rating matrix, built from
the old blocks by codes) and :mod:`~dcf.refresh.rows` (one block of the new table: rows
recomputed, copied or patched).
"""

from .core import refresh

__all__ = ["refresh"]

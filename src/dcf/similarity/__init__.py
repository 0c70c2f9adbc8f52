"""The similarity graph: which blocks, which measure, which method.

Entities (items for item-based CF, users for user-based) are cut into row
blocks of ``P``.  Two methods give the same values, bit for bit:

* ``rows`` (the default): the whole ratings matrix, others x entities, is
  stacked once and shared by every task, as the paper shares its neighbour
  table (Spark's broadcast); one task per range of entities of equal cost
  (``similarity-block``) cuts the range's ratings from that matrix, computes its
  rows with a sparse accumulator and keeps the top-k on the fly.  Needing no
  other input, the tasks are handed out as threads free up.  Cost follows the
  ratings (sum over the others of ratings-in-block x ratings), never the number
  of entity pairs; no merge.
* ``tiles`` (when the shared matrix would not fit a worker, see
  :func:`method`): similarity is symmetric, so only tiles ``(a, b)`` with
  ``a <= b`` are computed, one task each (``similarity-tile``); the lower half
  is read as transposes, and per-tile top-k lists are merged as a tree.
  No task holds more than one dense tile of ``block x block`` values unless
  the rated neighbourhood asks for whole rows.

Each concern lives in its own module:

- :mod:`~dcf.similarity.plan` -- sizing from the memory budget: the method, the block
  limit, the cost model and ranges of equal cost;
- :mod:`~dcf.similarity.tiles` -- the ``tiles`` method, whole rows from tiles, and how a
  block of whole rows is stored;
- :mod:`~dcf.similarity.shared` -- the shared matrix and the pass that prepares it (rating
  summary, entity costs), entity norms;
- :mod:`~dcf.similarity.rows` -- the ``rows`` method's tasks.
"""

from __future__ import annotations

from .plan import (MIN_BLOCK, PAIR_COST, ROW_BYTES_PER_ENTRY, SCAN_COST, SHARED_FRACTION, TILE_BYTES_PER_ENTRY,
                   WORKER_BASELINE_BYTES, balanced_cuts, block_limit, check_whole_rows, method, shared_bytes,
                   task_bytes, whole_row_cuts, whole_rows_bytes)
from .rows import similarity_by_rows
from .shared import entity_norms, entity_stats, prepare, shared_matrix, shared_parts
from .tiles import DENSE_FRACTION, SimilarityTiles, row_block_format, similarity_rows, similarity_tiles

__all__ = ["DENSE_FRACTION", "MIN_BLOCK", "PAIR_COST", "ROW_BYTES_PER_ENTRY", "SCAN_COST", "SHARED_FRACTION",
           "TILE_BYTES_PER_ENTRY", "WORKER_BASELINE_BYTES", "SimilarityTiles", "balanced_cuts", "block_limit",
           "check_whole_rows", "entity_norms", "entity_stats", "method", "prepare", "row_block_format", "shared_bytes",
           "shared_matrix", "shared_parts", "similarity_by_rows", "similarity_rows", "similarity_tiles",
           "task_bytes", "whole_row_cuts", "whole_rows_bytes"]

"""Per-block math: plain NumPy/SciPy on one block, knowing nothing of Dask.

Stage modules (:mod:`dcf.matrix`, :mod:`dcf.similarity`, :mod:`dcf.neighbours`,
:mod:`dcf.predict`) wrap these functions into task graphs.  Every function is
tested directly against a dense NumPy reference (``tests/reference.py``).

Orientation: similarity is computed between the *rows* of a CSR matrix ``P``
("entities": items for item-based CF, users for user-based) over its columns
(the "others").  Ratings are positive, so a stored entry means "rated".

The modules, by concern:

- :mod:`~dcf.kernels.measures`: the similarity measures, what each needs, the fast-path rule
- :mod:`~dcf.kernels.weights`: the BM25 and TF-IDF weights some measures put on the ratings
- :mod:`~dcf.kernels.sparse`: CSR blocks from ratings, the compiled runtime's warm-up, their arrays as the loops take them, row norms, per-column costs
- :mod:`~dcf.kernels.codec`: :class:`CompactCSR`, the shared matrix's compact storage
- :mod:`~dcf.kernels.tiles`: similarities of two blocks as one dense tile
- :mod:`~dcf.kernels.rows`: whole similarity rows (and top-k lists) from the shared matrix
- :mod:`~dcf.kernels.general`: the rows method's general loop (any measure; dense or CSR rows, top-k lists)
- :mod:`~dcf.kernels.select`: the rows loops' compiled top-k selection (sorted insert, heap, quickselect)
- :mod:`~dcf.kernels.prefetch`: the software prefetch the rows loops use
- :mod:`~dcf.kernels.topk`: top-k neighbour tables, their merge, the neighbour matrix
- :mod:`~dcf.kernels.scoring`: the weighted sums a prediction divides
- :mod:`~dcf.kernels.topn`: Top-N recommendations per row
- :mod:`~dcf.kernels.explain`: the largest terms behind each listed column's score
- :mod:`~dcf.kernels.fill`: the popularity fill of Top-N lists shorter than N
- :mod:`~dcf.kernels.hashing`: pandas' hash of integer ids' text, from their digits (the random split)
- :mod:`~dcf.kernels.cache`: where numba keeps their machine code (a folder per version of the sources)
"""

from __future__ import annotations

from importlib import import_module

from .cache import kernel_cache

# the libraries the kernels import, loaded before numba's cache is pointed at their folder: the
# window in which another thread's numba functions would be cached there too is dcf's own modules
for _library in ("numpy", "scipy.sparse", "llvmlite.ir"):
    import_module(_library)
del _library

with kernel_cache():  # every compiled kernel defined here: its cache in its sources' folder
    from .codec import CompactCSR, compact_csr, compact_join, compact_part, compact_stack, entity_rows, unpacked
    from .hashing import int_text_hashes
    from .measures import INPUTS, MEASURE, MEASURES, Measure, SimilaritySettings, column_totals, entity_totals, fast_topk, measure, needs_norms
    from .rows import TRACK_BELOW, similarity_rows
    from .scoring import score_pairs
    from .sparse import csr_from_events, csr_from_triplets, rater_costs, row_norms, warm_up
    from .tiles import similarity_tile
    from .topk import merge_topk, neighbour_matrix, top_columns, topk_rows
    from .explain import explain_rows
    from .topn import recommend_rows, top_n
    from .weights import Weights, rating_weights, weigh_block

__all__ = [
    "Measure", "MEASURE", "SimilaritySettings", "measure", "MEASURES", "INPUTS", "csr_from_triplets", "csr_from_events",
    "similarity_tile",
    "similarity_rows", "TRACK_BELOW", "row_norms",
    "needs_norms", "entity_totals", "column_totals", "entity_rows", "rater_costs",
    "CompactCSR", "compact_csr", "compact_stack", "compact_part", "compact_join", "unpacked", "fast_topk",
    "top_columns", "topk_rows",
    "merge_topk", "neighbour_matrix", "score_pairs", "top_n", "recommend_rows", "explain_rows", "warm_up",
    "Weights", "rating_weights", "weigh_block", "int_text_hashes",
]

"""``python -m dcf.serve MODEL_DIR``: a saved model answering HTTP requests from a
:class:`~dcf.serving.Snapshot` (issue 23).

- :mod:`~dcf.serve.app`: the ASGI application (Starlette): ``GET /recommend``, ``/similar``,
  ``/predict``, ``/health`` and ``POST /reload``, JSON in and out, a bad request a 400 with
  a one-line reason; the snapshot swapped whole on reload, so a request in flight finishes
  on the model it started with;
- :mod:`~dcf.serve.__main__`: the command (uvicorn on loopback by default).

Starlette and uvicorn (``pip install 'dcf[serve]'``): a small, well-kept ASGI toolkit and
server; the endpoints run in its thread pool, where the scoring kernels release the GIL.
"""

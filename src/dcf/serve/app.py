"""The service's ASGI application: a saved model's :class:`~dcf.serving.Snapshot` behind
four read-only endpoints and a reload (see :mod:`dcf.serve`)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import dask
import numpy as np
import pandas as pd
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..errors import ConfigError, DataError
from ..model import load
from ..predict import model_predictions
from .. import serving
from ..serving import Snapshot, held_bytes

__all__ = ["Holder", "make_app", "MAX_N"]

MAX_N = 1000  # the longest list one request may ask for
CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]*)")
# what each endpoint reads: anything else is refused, not ignored (a caller's "ranking=sum" is no setting here)
PARAMETERS = {"recommend": {"user", "n", "items", "exclude", "keep_rated", "explain"},
              "similar": {"item", "user", "n"}, "predict": {"user", "item"}}


class BadRequest(ValueError):
    """A request the service refuses (400), with its one-line reason."""


class Holder:
    """The snapshot being served, replaced whole by :meth:`reload` (a request holds the
    one it started with: nothing is dropped or half-swapped)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.snapshot = _snapshot(self.folder)
        self.loads = 1
        self._lock = threading.Lock()  # one reload at a time

    def reload(self) -> Snapshot:
        with self._lock:
            fresh = _snapshot(self.folder)
            self.snapshot = fresh  # one reference assignment: atomic for the readers
            self.loads += 1
            return fresh


def _snapshot(folder: Path) -> Snapshot:
    with dask.config.set(scheduler="sync"):  # a saved model in this process: no cluster
        model = load(folder)
        # the similarity rows /predict reads are held twice only where they are small (a
        # loaded model holds them already; a 27,000-item catalogue's dense rows are 5.8 GB)
        return Snapshot(model, pairs=held_bytes(model)[1] <= serving.HELD_BYTES)


def _id(text: str | None, what: str, vocab):
    """A query parameter as a raw id, read as the library reads one: an integer where the
    model's ids are and the text is one as written (``-?digits``, ASCII, no leading zero),
    else the text itself, spaces and all (``010`` or ``+10`` is no id of an integer model)."""
    if text is None or text == "":
        raise BadRequest(f"{what} is missing")
    return int(text) if vocab.numeric and CANONICAL_INT.fullmatch(text) else text


def _ids(text, vocab):
    return None if text is None else [_id(t, "an id", vocab) for t in text.split(",") if t.strip()]


def _n(text, default=10) -> int:
    if text is None:
        return default
    if not (re.fullmatch(r"[0-9]{1,6}", text) and 1 <= int(text) <= MAX_N):
        raise BadRequest(f"n must be a whole number from 1 to {MAX_N}, not {text[:40]!r}")
    return int(text)


def _flag(text, name) -> bool:
    if text is None:
        return False
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise BadRequest(f"{name} must be 1 or 0, not {text!r}")


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _recommend(holder: Holder, q) -> dict:
    snap = holder.snapshot
    m = snap.model.matrix_
    user = _id(q.get("user"), "user", m.users)
    frame = snap.recommend(user, n=_n(q.get("n")), items=_ids(q.get("items"), m.items),
                           exclude=_ids(q.get("exclude"), m.items),
                           filter_rated=not _flag(q.get("keep_rated"), "keep_rated"),
                           explain=_flag(q.get("explain"), "explain"))
    rows = frame.sort_values("rank")
    items = [{"item": _plain(r.item), "score": float(r.score), "fallback": str(r.fallback),
              **({"because": [{"item": _plain(b["item"]), "share": float(b["share"])} for b in r.because]}
                 if "because" in frame.columns else {})}
             for r in rows.itertuples()]
    return {"user": user, "items": items}


def _similar(holder: Holder, q) -> dict:
    snap = holder.snapshot
    vocab = snap.model.matrix_.items if snap.model.based == "item" else snap.model.matrix_.users
    what = "item" if snap.model.based == "item" else "user"
    entity = _id(q.get(what), what, vocab)
    if vocab.to_codes([entity])[0] < 0:
        raise LookupError(f"unknown {what} {entity!r}")
    frame = snap.similar(entity, n=_n(q.get("n")))
    return {what: entity, "similar": [{what: _plain(r.neighbour), "similarity": float(r.similarity)}
                                      for r in frame.itertuples()]}


def _predict(holder: Holder, q) -> dict:
    snap = holder.snapshot
    m = snap.model.matrix_
    user, item = _id(q.get("user"), "user", m.users), _id(q.get("item"), "item", m.items)
    pairs = pd.DataFrame({"user": [user], "item": [item]})
    if snap.predicts:
        out = snap.predict(pairs)
    else:  # the loaded model's own graph, in this process
        with dask.config.set(scheduler="sync"):
            out = model_predictions(snap.model, pairs).compute()
    r = out.iloc[0]
    return {"user": user, "item": item, "prediction": float(r["prediction"]), "neighbours": int(r["neighbours"]),
            "fallback": str(r["fallback"])}


def _checked(query, name):
    """The query's parameters, each given once, all of them known to the endpoint."""
    names = [k for k, _ in query.multi_items()]
    unknown = sorted(set(names) - PARAMETERS[name])
    if unknown:
        raise BadRequest(f"unknown parameter(s) {', '.join(unknown)} (this endpoint takes "
                         f"{', '.join(sorted(PARAMETERS[name]))})")
    twice = sorted({k for k in names if names.count(k) > 1})
    if twice:
        raise BadRequest(f"parameter(s) given more than once: {', '.join(twice)}")
    return query


def _endpoint(holder: Holder, answer, name):
    def run(request):
        try:
            return JSONResponse(answer(holder, _checked(request.query_params, name)))
        except (BadRequest, ConfigError, DataError, ValueError) as exc:
            return JSONResponse({"error": _one_line(exc)}, status_code=400)
        except LookupError as exc:
            return JSONResponse({"error": _one_line(exc)}, status_code=404)
        except Exception as exc:  # never a traceback to the client (the server's log has it)
            return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, status_code=500)
    return run


def _one_line(exc) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def make_app(folder) -> Starlette:
    """The application serving the saved model in ``folder`` (loaded now: a folder that is
    no model fails here, before the server listens)."""
    holder = Holder(folder)

    def health(request):
        snap = holder.snapshot
        users, items = snap.model.matrix_.shape
        return JSONResponse({"status": "ok", "model": str(holder.folder), "users": int(users), "items": int(items),
                             "loads": holder.loads})

    def reload(request):
        try:
            holder.reload()
        except Exception as exc:  # the old model keeps serving
            return JSONResponse({"error": f"reload failed, still serving the previous model: {_one_line(exc)}"},
                                status_code=409)
        return health(request)

    def http_error(request, exc):  # an unknown path or method: JSON as every other answer
        return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"}, status_code=exc.status_code)

    app = Starlette(exception_handlers={HTTPException: http_error}, routes=[
        Route("/health", health), Route("/reload", reload, methods=["POST"]),
        Route("/recommend", _endpoint(holder, _recommend, "recommend")),
        Route("/similar", _endpoint(holder, _similar, "similar")),
        Route("/predict", _endpoint(holder, _predict, "predict"))])
    app.state.holder = holder
    return app

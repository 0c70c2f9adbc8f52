"""``python -m dcf.serve``: a saved model served over HTTP by a real process, queried by a
real client: answers equal to the model's, bad requests a 400 with one line, a reload
under load with no failed request, a busy port and a folder that is no model refused."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import dask
import pandas as pd
import pytest

from conftest import random_ratings
import dcf.serving
from dcf import ItemKNN
from dcf.errors import ConfigError

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


def _get(url, method="GET"):
    """``(status, JSON body)`` of one request (10 s at most)."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Server:
    """``python -m dcf.serve FOLDER --port 0`` in its own session, killed on exit."""

    def __init__(self, folder, *extra, env=None):
        self.proc = subprocess.Popen([sys.executable, "-m", "dcf.serve", str(folder), "--port", "0", *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True, env={**os.environ, **(env or {})})
        self.line = self._first_line(60)

    def _first_line(self, seconds):
        got = []
        reader = threading.Thread(target=lambda: got.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(seconds)
        return got[0].strip() if got else ""

    @property
    def url(self):
        return self.line.rsplit(" ", 1)[-1]

    def close(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture
def saved(tmp_path):
    train = random_ratings(31, n_users=40, n_items=30, density=0.3)
    with dask.config.set(scheduler="sync"):
        model = ItemKNN(k=4, neighbourhood="global").fit(train)
        model.save(tmp_path / "model")
    return tmp_path / "model", model, train


def test_the_service_answers_as_the_model_and_refuses_bad_requests(saved, monkeypatch):
    monkeypatch.setattr(dcf.serving, "HELD_BYTES", 0)  # this process's answers: the model's task graphs
    folder, model, _ = saved
    server = Server(folder)
    try:
        assert server.line.startswith(f"serving {folder} on http://127.0.0.1:"), server.line
        status, body = _get(server.url + "/health")
        assert status == 200 and body["users"] == 40 and body["items"] == 30
        status, body = _get(server.url + "/recommend?user=100&n=5&explain=1")
        with dask.config.set(scheduler="sync"):
            want = model.recommend(100, n=5, explain=True).compute().sort_values("rank")
        assert status == 200 and body["user"] == 100
        assert [x["item"] for x in body["items"]] == want["item"].tolist()
        assert [x["score"] for x in body["items"]] == want["score"].tolist()
        assert [x["because"] for x in body["items"]] == [[dict(b) for b in why] for why in want["because"]]
        status, body = _get(server.url + "/recommend?user=someone-new&n=3&items=500,501,502,503,504&exclude=501")
        assert status == 200 and len(body["items"]) == 3
        assert {x["fallback"] for x in body["items"]} == {"unknown_user"}
        assert {x["item"] for x in body["items"]} <= {500, 502, 503, 504}
        status, body = _get(server.url + "/recommend?user=0100&n=2")  # no id as the library reads ids
        assert status == 200 and {x["fallback"] for x in body["items"]} == {"unknown_user"}
        status, body = _get(server.url + "/similar?item=500&n=3")
        with dask.config.set(scheduler="sync"):
            nb = model.neighbours(ids=[500], n=3)
        assert status == 200 and [x["item"] for x in body["similar"]] == nb["neighbour"].tolist()
        status, body = _get(server.url + "/predict?user=100&item=501")
        with dask.config.set(scheduler="sync"):
            pred = model.predict(pd.DataFrame({"user": [100], "item": [501]})).compute().iloc[0]
        assert status == 200 and body["fallback"] == pred["fallback"] and body["neighbours"] == pred["neighbours"]
        assert body["prediction"] == pred["prediction"]
        for query, code, words in (("/recommend?n=3", 400, "user is missing"),
                                   ("/recommend?user=100&n=0", 400, "n must be a whole number"),
                                   ("/recommend?user=100&n=abc", 400, "n must be a whole number"),
                                   ("/recommend?user=100&explain=perhaps", 400, "explain must be 1 or 0"),
                                   ("/similar?item=424242", 404, "unknown item 424242"),
                                   ("/predict?user=100", 400, "item is missing"),
                                   ("/recommend?user=100&ranking=sum", 400, "unknown parameter(s) ranking"),
                                   ("/recommend?user=100&user=101", 400, "given more than once: user"),
                                   ("/recommend?user=100&n=%D9%A3", 400, "n must be a whole number")):
            status, body = _get(server.url + query)
            assert status == code and words in body["error"] and "\n" not in body["error"], (query, body)
        status, body = _get(server.url + "/reload")  # GET: not allowed
        assert status == 405 and body["error"] == "Method Not Allowed: GET /reload"
        status, body = _get(server.url + "/nowhere")
        assert status == 404 and "/nowhere" in body["error"]
    finally:
        server.close()
    assert "Traceback" not in server.proc.stderr.read()


def _status(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_a_reload_under_load_drops_no_request(saved):
    folder, _, train = saved
    server = Server(folder)
    statuses, stop = [], threading.Event()

    def client():
        while not stop.is_set():
            statuses.append(_status(server.url + "/recommend?user=101&n=5"))

    try:
        clients = [threading.Thread(target=client, daemon=True) for _ in range(4)]
        for c in clients:
            c.start()
        time.sleep(0.5)
        with dask.config.set(scheduler="sync"):  # a new model saved over the folder dcf wrote
            ItemKNN(k=6, neighbourhood="global").fit(train).save(folder)
        status, body = _get(server.url + "/reload", "POST")
        assert status == 200 and body["loads"] == 2
        time.sleep(0.5)
        stop.set()
        for c in clients:
            c.join(15)
        assert statuses and set(statuses) == {200}, set(statuses)
    finally:
        stop.set()
        server.close()


def test_a_folder_that_is_no_model_and_a_busy_port_are_refused(saved, tmp_path):
    folder, _, _ = saved
    out = subprocess.run([sys.executable, "-m", "dcf.serve", str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("dcf.serve: error:") and "Traceback" not in out.stderr
    server = Server(folder)
    try:
        port = server.url.rsplit(":", 1)[-1]
        busy = subprocess.run([sys.executable, "-m", "dcf.serve", str(folder), "--port", port],
                              capture_output=True, text=True, timeout=60)
        assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
        wrong = subprocess.run([sys.executable, "-m", "dcf.serve", str(folder), "--port", "70000"],
                               capture_output=True, text=True, timeout=60)
        assert wrong.returncode == 2 and "--port must be between 0 and 65535" in wrong.stderr
        assert "Traceback" not in wrong.stderr
    finally:
        server.close()


def test_predict_without_holding_the_similarity_rows_twice(tmp_path, monkeypatch):
    monkeypatch.setattr(dcf.serving, "HELD_BYTES", 0)
    train = random_ratings(32, n_users=30, n_items=20, density=0.3)
    with dask.config.set(scheduler="sync"):
        model = ItemKNN(k=4).fit(train)  # rated: predict reads the dense similarity rows
        model.save(tmp_path / "model")
        want = model.predict(pd.DataFrame({"user": [100, 101], "item": [505, 99999]})).compute()
    server = Server(tmp_path / "model", env={"DCF_HELD_BYTES": "0"})  # the service holds no second copy
    try:
        for row in want.itertuples():
            status, body = _get(server.url + f"/predict?user={row.user}&item={row.item}")
            assert status == 200 and body["prediction"] == row.prediction and body["fallback"] == row.fallback
        status, body = _get(server.url + "/recommend?user=100&n=3")
        assert status == 200 and len(body["items"]) == 3
    finally:
        server.close()
    with pytest.raises(ConfigError, match="DCF_HELD_BYTES must be a whole number"):
        monkeypatch.setenv("DCF_HELD_BYTES", "1GB")
        dcf.serving._held_limit()

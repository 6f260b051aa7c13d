"""Bounded load test: 50 raters submit concurrently to a real uvicorn server on loopback."""

import contextlib
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from rs_support import build_study, db_url, live_server, postgres_url  # noqa: F401 - fixtures
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from uterosynth.reader_study import models
from uterosynth.reader_study.main import create_app
from uterosynth.reader_study.settings import Settings

N_RATERS = 50


@pytest.mark.slow
def test_fifty_raters_submit_concurrently_without_loss_or_duplicates(tmp_path, db_url):  # noqa: F811
    study = build_study(tmp_path, per_source=2, raters=[f"rater{i:02d}" for i in range(N_RATERS)])
    app = create_app(Settings(study_dir=study.root, db_url=db_url))
    tokens = study.tokens
    with live_server(app) as base, httpx.Client(base_url=base, timeout=60,
                                                limits=httpx.Limits(max_connections=N_RATERS)) as client:
        assignments = {
            name: [a["id"] for a in client.get("/api/rater/items", headers={"Authorization": f"Bearer {t}"}).json()]
            for name, t in tokens.items()
        }
        # one answer per (rater, item) plus, per rater, a racing duplicate of their first item
        tasks = [(name, aid, "synthetic" if k % 2 else "real") for name, ids in assignments.items()
                 for k, aid in enumerate(ids)]
        tasks += [(name, ids[0], "synthetic") for name, ids in assignments.items()]
        random.Random(0).shuffle(tasks)
        barrier = threading.Barrier(N_RATERS)

        def submit(task):
            name, aid, choice = task
            with contextlib.suppress(threading.BrokenBarrierError):  # fewer tasks left than workers
                barrier.wait(timeout=30)
            body = {"assignment_id": aid, "choice": choice, "confidence": 3, "realism": 4}
            res = client.post("/api/rater/ratings", json=body, headers={"Authorization": f"Bearer {tokens[name]}"})
            return name, aid, choice, res.status_code

        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=N_RATERS) as pool:
            results = list(pool.map(submit, tasks))
        elapsed = time.monotonic() - start
        barrier.abort()

    codes = [r[3] for r in results]
    assert set(codes) <= {201, 409}, f"unexpected status codes {sorted(set(codes))}"
    created = {}
    for name, aid, choice, code in results:
        if code == 201:
            assert (name, aid) not in created, "two answers accepted for one image"
            created[(name, aid)] = choice
    n_expected = sum(len(ids) for ids in assignments.values())
    assert len(created) == n_expected and codes.count(409) == N_RATERS
    with Session(app.state.engine) as s:
        stored = {(r.name, a.id): rating.choice for rating, a, r in s.execute(
            select(models.Rating, models.Assignment, models.Rater)
            .join(models.Assignment, models.Rating.assignment_id == models.Assignment.id)
            .join(models.Rater, models.Rating.rater_id == models.Rater.id)).all()}
        assert s.scalar(select(func.count()).select_from(models.Rating)) == n_expected
    assert stored == created  # nothing lost, nothing duplicated, the accepted answer is the stored one
    app.state.engine.dispose()
    assert elapsed < 120, f"{len(tasks)} submissions took {elapsed:.1f} s"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _outside_address() -> str | None:
    """A non-loopback address of this machine, if it has one (no packet is sent)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.254.254.254", 1))
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


@pytest.mark.slow
def test_serve_command_listens_on_loopback_only(tmp_path):
    import socket
    import subprocess
    import sys

    study = build_study(tmp_path, per_source=2, raters=["alice"])
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uterosynth", "reader-study", "serve", str(study.root), "--port", str(port),
         "--db-url", f"sqlite:///{tmp_path / 'serve.sqlite'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                res = httpx.get(f"http://127.0.0.1:{port}/api/rater/me",
                                headers={"Authorization": f"Bearer {study.tokens['alice']}"}, timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.3)
        assert res.status_code == 200 and res.json()["name"] == "alice"
        outside = _outside_address()
        if outside:
            with socket.socket() as s, pytest.raises(OSError):
                s.settimeout(3)
                s.connect((outside, port))
    finally:
        proc.terminate()
        proc.wait(timeout=30)

"""Reader-study server under load: N raters submit all their answers concurrently.

Starts the app with uvicorn on 127.0.0.1 (a free port), one thread per rater, each rater
submitting their answers one after another; reports wall time, answers per second and
per-request latency, and checks that every answer is stored exactly once.

    python benchmarks/reader_study_load.py [--raters 50] [--per-source 5] [--postgres URL] [--write]

``--write`` replaces the "## Reader study" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "tests" / "reader_study")]


def run(db_url: str | None, raters: int, per_source: int, tmp: Path) -> dict:
    import httpx
    import numpy as np
    from rs_support import build_study, live_server
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from uterosynth.reader_study import models
    from uterosynth.reader_study.main import create_app
    from uterosynth.reader_study.settings import Settings

    study = build_study(tmp, per_source=per_source, raters=[f"r{i:03d}" for i in range(raters)])
    app = create_app(Settings(study_dir=study.root, db_url=db_url or f"sqlite:///{tmp / 'bench.sqlite'}"))
    latencies: list[float] = []
    with live_server(app) as base, httpx.Client(base_url=base, timeout=120,
                                                limits=httpx.Limits(max_connections=raters)) as client:
        def rater(token: str) -> None:
            h = {"Authorization": f"Bearer {token}"}
            for k, item in enumerate(client.get("/api/rater/items", headers=h).json()):
                body = {"assignment_id": item["id"], "choice": "real" if k % 2 else "synthetic",
                        "confidence": 3, "realism": 3}
                t0 = time.perf_counter()
                res = client.post("/api/rater/ratings", json=body, headers=h)
                latencies.append(time.perf_counter() - t0)
                if res.status_code != 201:
                    raise RuntimeError(f"status {res.status_code}")

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=raters) as pool:
            list(pool.map(rater, study.tokens.values()))
        wall = time.perf_counter() - start
    with Session(app.state.engine) as s:
        stored = s.scalar(select(func.count()).select_from(models.Rating))
    app.state.engine.dispose()
    expected = raters * 2 * per_source
    if stored != expected:
        raise RuntimeError(f"stored {stored} answers, expected {expected}")
    lat = np.array(latencies) * 1000
    return {"backend": "PostgreSQL" if db_url else "SQLite", "answers": expected, "wall_s": wall,
            "per_s": expected / wall, "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raters", type=int, default=50)
    ap.add_argument("--per-source", type=int, default=5)
    ap.add_argument("--postgres", default=os.environ.get("UTEROSYNTH_TEST_POSTGRES_URL"),
                    help="also run against this PostgreSQL URL (default: $UTEROSYNTH_TEST_POSTGRES_URL)")
    ap.add_argument("--contended", action="store_true", help="note that the machine was shared while measuring")
    ap.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = ap.parse_args()
    rows = []
    for url in [None, args.postgres] if args.postgres else [None]:
        with tempfile.TemporaryDirectory() as tmp:
            if url:
                rows.append(_with_schema(url, lambda u, t=tmp: run(u, args.raters, args.per_source, Path(t))))
            else:
                rows.append(run(None, args.raters, args.per_source, Path(tmp)))
    cmd = "python benchmarks/reader_study_load.py " + " ".join(sys.argv[1:])
    if args.postgres and "--postgres" not in sys.argv:
        cmd = "UTEROSYNTH_TEST_POSTGRES_URL=<url> " + cmd
    machine = f"{os.cpu_count()}-core CPU, {platform.system()}, no GPU" + (", shared with other jobs (contended)"
                                                                          if args.contended else "")
    lines = ["## Reader study", "",
             f"{args.raters} raters submit {2 * args.per_source} answers each, concurrently, to one uvicorn "
             "server on 127.0.0.1 (server and clients on the same machine); every answer is checked to be "
             "stored exactly once.", "",
             "| database | answers | wall time (s) | answers/s | latency p50 (ms) | latency p95 (ms) |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['backend']} | {r['answers']} | {r['wall_s']:.1f} | {r['per_s']:.0f} | {r['p50_ms']:.0f} "
              f"| {r['p95_ms']:.0f} |" for r in rows]
    lines += ["", f"Machine: {machine}. Command: `{cmd.strip()}`.", ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        _write_section(ROOT / "docs" / "BENCHMARKS.md", "## Reader study", text)


def _with_schema(url: str, fn):
    import uuid

    from sqlalchemy import create_engine, text

    from uterosynth.reader_study.db import normalise_url

    schema = f"rs_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        sep = "&" if "?" in url else "?"
        return fn(f"{url}{sep}options=-csearch_path%3D{schema}")
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _write_section(path: Path, heading: str, text: str) -> None:
    old = path.read_text() if path.exists() else "# Benchmarks\n\n"
    start = old.find(heading + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(heading))
        new = old[:start] + text + ("" if end < 0 else old[end + 1:])
    path.write_text(new.rstrip("\n") + "\n")


if __name__ == "__main__":
    main()

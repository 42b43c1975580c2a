"""Reviewer threads doing claim + submit + approve, on SQLite and on PostgreSQL.

    python -m tests.perf.bench_queue [--items 3000] [--threads 16 64] [--backend sqlite postgresql]

For each backend and thread count: reviews per second, double claims and lost corrections
(both must be 0). Targets: >= 1,000 reviews/s on SQLite with 16 threads; PostgreSQL within 2x
of SQLite at 16 threads and ahead of it at 64. PostgreSQL is a throw-away local server started
for the run (tests/pg_server.py: initdb + pg_ctl) with its default durability (fsync on), as
SQLite's commits of captions and decisions are (synchronous=FULL).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from annotate.records import Draft, NewItem
from annotate.store import Store


def seed(store: Store, n: int) -> None:
    rows = [NewItem(f"{i:064x}", "url", Draft("bench", "v1", f"draft caption {i}"), url=f"https://example.org/{i}.jpg")
            for i in range(n)]
    store.enqueue_many(rows)


def reviewer(store: Store, name: str, claims: list, saved: dict, errors: list) -> None:
    try:
        while (item := store.claim_next(name)) is not None:
            claims.append(item.id)
            caption = f"{name} corrected item {item.id}"
            version = store.submit_correction(item.id, name, caption, item.version)
            store.approve(item.id, name, expected_version=version)
            saved[item.id] = caption
    except Exception as exc:  # reported in the result: a benchmark must not hide failures
        errors.append(repr(exc))


def run(items: int, threads: int, url: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp, Store(url, data_dir=Path(tmp)) as store:
        seed(store, items)
        claims: list[int] = []
        saved: dict[int, str] = {}
        errors: list[str] = []
        workers = [threading.Thread(target=reviewer, args=(store, f"r{i}", claims, saved, errors))
                   for i in range(threads)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        seconds = time.perf_counter() - start
        double = sum(n - 1 for n in Counter(claims).values() if n > 1)
        lost = sum(1 for item_id, caption in saved.items() if store.get_item(item_id).caption != caption)
        counts = store.counts()
    return {
        "backend": store.engine.dialect.name, "threads": threads, "items": items, "seconds": round(seconds, 2),
        "reviews_per_s": round(len(saved) / seconds, 1), "double_claims": double,
        "lost_corrections": lost + (items - len(saved)), "approved": counts["approved"],
        # The rate targets compare backends (printed after the runs); each run must lose nothing.
        "errors": errors[:5], "targets": {"double_claims": 0, "lost_corrections": 0},
        "pass": double == 0 and lost == 0 and len(saved) == items and not errors,
    }


@contextmanager
def postgresql_server():
    from tests.pg_server import PgServer

    server = PgServer(Path(tempfile.mkdtemp(prefix="humanvlm-bench-pg-")), durable=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--threads", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--backend", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"])
    parser.add_argument("--json", action="store_true", help="print JSON only, one line per run")
    args = parser.parse_args(argv)
    results = []
    for backend in args.backend:
        with (postgresql_server() if backend == "postgresql" else _no_server()) as server:
            for threads in args.threads:
                url = server.fresh_database() if server else None
                results.append(run(args.items, threads, url))
                print(json.dumps(results[-1], indent=None if args.json else 2), flush=True)
    by = {(r["backend"], r["threads"]): r["reviews_per_s"] for r in results}
    for threads in args.threads:
        if ("sqlite", threads) in by and ("postgresql", threads) in by:
            ratio = by[("postgresql", threads)] / by[("sqlite", threads)]
            target = ">= 0.5" if threads <= 16 else "> 1"
            print(json.dumps({"threads": threads, "postgresql_vs_sqlite": round(ratio, 2), "target": target}))
    if ("sqlite", 16) in by:
        print(json.dumps({"sqlite_16_threads_reviews_per_s": by[("sqlite", 16)], "target": ">= 1000"}))
    return 0


@contextmanager
def _no_server():
    yield None

if __name__ == "__main__":
    sys.exit(main())

"""16 reviewer threads doing claim + submit + approve on one SQLite file.

    python -m tests.perf.bench_queue [--items 3000] [--threads 16]

Prints reviews per second (target >= 300), double claims and lost corrections (both must be 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import Counter
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


def run(items: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, Store(data_dir=Path(tmp)) as store:
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
        "threads": threads, "items": items, "seconds": round(seconds, 2),
        "reviews_per_s": round(len(saved) / seconds, 1), "double_claims": double,
        "lost_corrections": lost + (items - len(saved)), "approved": counts["approved"],
        "errors": errors[:5], "targets": {"reviews_per_s": ">= 300", "double_claims": 0, "lost_corrections": 0},
        "pass": len(saved) / seconds >= 300 and double == 0 and lost == 0 and len(saved) == items and not errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print JSON only, on one line")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.items, args.threads), indent=None if args.json else 2))
    return 0

if __name__ == "__main__":
    sys.exit(main())

"""8 reviewers through the HTTP API at once, every item needing 2 independent reviews.

    python -m tests.perf.bench_api_review [--items 200] [--reviewers 8] [--overlap 2] [--db URL]

The real app is served on loopback with log-in (each reviewer signs in as themselves); each
reviewer is a `gradio_client.Client` in its own thread doing `/review_claim` then
`/review_approve` with a corrected caption and the version it read, until nothing is left.
Reports reviews/s and collisions: refused calls, an item reviewed twice by one reviewer, or by
more or fewer than `overlap` reviewers (targets: 0).
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


def seed_photos(store, count: int, overlap: int = 1) -> None:
    """`count` distinct small photos (the API refuses to approve a caption of an unseen photo)."""
    from PIL import Image

    from annotate.records import Draft

    for i in range(count):
        image = Image.new("RGB", (48, 48), (i % 256, (i // 256) % 256, 128))
        store.enqueue(image, Draft("bench", "v1", f"draft caption {i}"), overlap=overlap)


def review_through_api(store, reviewers: int) -> tuple[list[tuple[int, str]], list[str], float]:
    """Serve the app on `store` with log-in; `reviewers` clients claim and approve until the
    queue is empty. Returns ((item id, reviewer) per review, errors, seconds)."""
    from gradio_client import Client

    from app.policy import resolve_access
    from tests.conftest import running_app

    users = [(f"r{i}", f"pw-{i}") for i in range(reviewers)]
    access = resolve_access("127.0.0.1", public=True, auth=True, admins="", reviewers=None, env={})
    done: list[tuple[int, str]] = []
    errors: list[str] = []
    lock = threading.Lock()
    with running_app(store=store, auth=users, access=access) as app_url:
        clients = [Client(app_url, auth=user, verbose=False) for user in users]

        def review(client, name):
            try:
                while (item := client.predict(api_name="/review_claim")) is not None:
                    client.predict(item_id=item["id"], caption=f"{name} corrected {item['id']}",
                                   version=item["version"], api_name="/review_approve")
                    with lock:
                        done.append((item["id"], name))
            except Exception as exc:  # reported: a benchmark must not hide failures
                errors.append(repr(exc)[:300])

        threads = [threading.Thread(target=review, args=(c, u[0])) for c, u in zip(clients, users)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return done, errors, time.perf_counter() - start


def run(items: int, reviewers: int, overlap: int, url: str | None = None) -> dict:
    from annotate.store import Store

    with tempfile.TemporaryDirectory() as tmp, Store(url, data_dir=Path(tmp)) as store:
        seed_photos(store, items, overlap)
        done, errors, seconds = review_through_api(store, reviewers)
        per_item = Counter(item_id for item_id, _ in done)
        twice = len(done) - len(set(done))
        wrong_count = sum(1 for i in range(1, items + 1) if per_item[i] != overlap)
        approved = store.counts()["approved"]
    collisions = len(errors) + twice + wrong_count
    return {"benchmark": "HTTP API review with overlap", "reviewers": reviewers, "items": items, "overlap": overlap,
            "reviews": len(done), "seconds": round(seconds, 2), "reviews_per_s": round(len(done) / seconds, 1),
            "collisions": collisions, "errors": errors[:3], "approved": approved,
            "pass": collisions == 0 and approved == items}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--reviewers", type=int, default=8)
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--db", metavar="URL", help="database URL (default: a SQLite file in a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print JSON on one line")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.items, args.reviewers, args.overlap, args.db), indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

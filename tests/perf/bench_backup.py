"""Backup of a HumanCaption-HQ-sized queue while reviewers keep working.

    python -m tests.perf.bench_backup [--items 311000] [--images 1000] [--writers 8] [--rounds 3]

Builds a queue of `--items` items (HQ-sized ~1.6 KB captions, URL-only like an HQ import, plus
`--images` stored photos), then reports:
- the time and size of one `backup` snapshot of it, idle (target: <= 60 s);
- the reviews per second of `--writers` threads (claim + correct + approve) while a snapshot is
  being taken, against the same threads with no backup, measured over equally long windows,
  alternating, `--rounds` times (target: >= 0.8x).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

from annotate.backup import take_snapshot
from annotate.records import Draft, NewItem
from annotate.store import Store
from tests.perf.datagen import captions


def seed(store: Store, items: int, images: int) -> None:
    texts = captions()
    for start in range(0, items, 20_000):
        stop = min(items, start + 20_000)
        store.enqueue_many([NewItem(f"{i:064x}", "url", Draft("bench", "v1", f"Photo {i}. " + texts[i % len(texts)]),
                                    url=f"https://images.example.org/hq/{i:07d}.jpg") for i in range(start, stop)])
    for n in range(images):
        out = io.BytesIO()
        Image.new("RGB", (64, 64), (n % 256, (n // 256) % 256, 7)).save(out, "PNG")
        store.enqueue(out.getvalue(), Draft("bench", "v1", "a photo"))


class Writers:
    """`n` threads doing claim + correct + approve until stopped; `done` counts reviews."""

    def __init__(self, store: Store, n: int):
        self.store, self.done, self.errors = store, 0, []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._review, args=(f"w{i}",)) for i in range(n)]

    def _review(self, name: str) -> None:
        try:
            while not self._stop.is_set() and (item := self.store.claim_next(name)) is not None:
                version = self.store.submit_correction(item.id, name, f"{name} corrected {item.id}", item.version)
                self.store.approve(item.id, name, expected_version=version)
                with self._lock:
                    self.done += 1
        except Exception as exc:  # reported: a benchmark must not hide failures
            self.errors.append(repr(exc))

    def __enter__(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def rate_over(self, seconds: float, during=None) -> tuple[float, float]:
        """Reviews per second over a window: `during()`'s own duration when given, else `seconds`."""
        before, start = self.done, time.perf_counter()
        if during is not None:
            during()
        else:
            time.sleep(seconds)
        elapsed = time.perf_counter() - start
        return (self.done - before) / elapsed, elapsed


def run(items: int, images: int, writers: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data, backups = Path(tmp) / "data", Path(tmp) / "backups"
        with Store(data_dir=data) as store:
            t = time.perf_counter()
            seed(store, items, images)
            seeded_s = time.perf_counter() - t
            t = time.perf_counter()
            first = take_snapshot(store.url, data, backups)
            idle_s = time.perf_counter() - t
            db_mb = first.manifest["database_bytes"] / 2**20
            snapshot_mb = sum(p.stat().st_size for p in first.path.rglob("*") if p.is_file()) / 2**20
            ratios, during_rates, without_rates, backup_s = [], [], [], []
            with Writers(store, writers) as crowd:
                time.sleep(1.0)  # warm up: pools, caches
                for n in range(rounds):  # alternate which window comes first (WAL growth, checkpoints)
                    if n % 2:
                        without, _ = crowd.rate_over(backup_s[-1])
                        during, seconds = crowd.rate_over(0, lambda: take_snapshot(store.url, data, backups))
                    else:
                        during, seconds = crowd.rate_over(0, lambda: take_snapshot(store.url, data, backups))
                        without, _ = crowd.rate_over(seconds)
                    during_rates.append(during)
                    without_rates.append(without)
                    backup_s.append(seconds)
                    ratios.append(during / without)
            errors = crowd.errors
    ratio = statistics.median(ratios)
    return {
        "items": items, "images": images, "writers": writers, "seed_s": round(seeded_s, 1),
        "backup_idle_s": round(idle_s, 2), "database_mb": round(db_mb, 1), "snapshot_mb": round(snapshot_mb, 1),
        "backup_under_load_s": [round(s, 2) for s in backup_s],
        "reviews_per_s_during_backup": [round(r, 1) for r in during_rates],
        "reviews_per_s_without": [round(r, 1) for r in without_rates],
        "ratio_median": round(ratio, 2), "ratios": [round(r, 2) for r in ratios], "errors": errors[:5],
        "targets": {"backup_idle_s": "<= 60", "ratio_median": ">= 0.8"},
        "pass": idle_s <= 60 and ratio >= 0.8 and not errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=311_000)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print JSON only, on one line")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.items, args.images, args.writers, args.rounds), indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

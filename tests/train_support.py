"""Helpers for the training tests: synthetic shapes put through the real review queue and export."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from tests.synthetic_shapes import QUESTION, samples, wrong_caption

REPO = Path(__file__).resolve().parent.parent


def approve_shapes(store, count: int, seed: int = 0, reviewer: str = "rita") -> dict[int, str]:
    """Queue `count` shape images with wrong model drafts, then a reviewer claims, corrects and
    approves every one through the queue API. Returns {item id: approved caption}."""
    from annotate.records import Draft

    rng = random.Random(seed + 1)
    truth: dict[int, str] = {}
    for sample in samples(count, seed):
        draft = Draft("demo", "demo-v2", caption=wrong_caption(rng), preset="custom", prompt=QUESTION)
        truth[store.enqueue(sample.image, draft)] = sample.caption
    while (item := store.claim_next(reviewer)) is not None:
        version = store.submit_correction(item.id, reviewer, truth[item.id], item.version)
        store.approve(item.id, reviewer, expected_version=version)
    return truth


def export_to(store, out: Path, format: str = "llava", split: float = 0.9) -> Path:
    from annotate.export import export

    export(store, out, format=format, split=split)
    return out


def app_py(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python app.py ARGS` the way a user does; stdout and stderr captured."""
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "app.py"), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"app.py {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc


def last_json(stdout: str) -> dict:
    """The JSON object a command printed (its last non-empty stdout line)."""
    return json.loads([line for line in stdout.splitlines() if line.strip()][-1])


def disagreeing_reviews(store, photo) -> int:
    """An overlap-2 item that bob and carol corrected very differently (for adjudication);
    returns its id."""
    from annotate.records import Draft

    item_id = store.enqueue(photo, Draft("demo", "v1", caption="A woman."), overlap=2)
    for reviewer, caption in (("bob", "A woman in an orange flight suit."), ("carol", "Two cats on a sofa.")):
        item = store.claim_next(reviewer)
        version = store.submit_correction(item.id, reviewer, caption, item.version)
        store.approve(item.id, reviewer, expected_version=version)
    return item_id

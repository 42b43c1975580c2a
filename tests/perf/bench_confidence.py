"""Least-confident first: does reviewing low-confidence drafts first clean the queue faster?

    python -m tests.perf.bench_confidence [--train-items 330] [--steps 120] [--queue-items 200] [--json]

On the synthetic shapes set (tests/synthetic_shapes.py): the demo model is trained part of the way
(`--steps`, so its drafts are a mix of right and wrong), then `queue add`'s code path captions new
shapes into a real queue, recording each draft's confidence from generate's scores. A reviewer
then works through the queue with `claim_next` in `fifo`, `confidence` and `random` order,
correcting each draft to the true caption. After every tenth of the queue the benchmark reports
the mean edit rate (normalized Levenshtein, draft -> true caption) left in the items not yet
reviewed: the error a team would still ship if it stopped there. Lower sooner is better;
`area` is the mean of the curve (the target: confidence below fifo).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

from tests.perf.bench_train import BATCH, make_export


def partly_trained(data: Path, out: Path, steps: int) -> Path:
    from train.options import TrainOptions
    from train.trainer import train

    train(TrainOptions(data=str(data), base="demo", out=str(out), max_steps=steps, batch_size=BATCH,
                       save_steps=steps + 1))
    return out


def queue_new_shapes(store, vlm, folder: Path, count: int) -> dict[int, str]:
    """Caption `count` new shape images into the queue; returns {item id: true caption}."""
    from annotate.batch import caption_into_queue
    from model.generate import GenerationSettings
    from tests.synthetic_shapes import QUESTION, samples

    folder.mkdir(parents=True)
    truth_by_path = {}
    for index, sample in enumerate(samples(count, seed=12345)):
        path = folder / f"{index:04d}.png"
        sample.image.save(path)
        truth_by_path[path] = sample.caption
    paths = sorted(truth_by_path)
    result = caption_into_queue(store, vlm, paths, QUESTION, "custom", GenerationSettings(max_new_tokens=40),
                                batch_size=16)
    return {item_id: truth_by_path[path] for item_id, path in zip(result.queued, paths)}


def curve(store, truth: dict[int, str], order: str, points: int = 10) -> list[float]:
    """Mean draft->truth edit rate of the unreviewed items after each 1/points of the queue."""
    from annotate.store import edit_rate

    error = {item_id: edit_rate(store.get_item(item_id).draft.caption, text) for item_id, text in truth.items()}
    left, out, reviewed = dict(error), [], 0
    marks = {round(len(truth) * k / points) for k in range(points + 1)}
    while True:
        if reviewed in marks:
            out.append(round(sum(left.values()) / len(left), 4) if left else 0.0)
        item = store.claim_next("rita", order=order)
        if item is None:
            break
        version = store.submit_correction(item.id, "rita", truth[item.id], item.version)
        store.approve(item.id, "rita", expected_version=version)
        del left[item.id]
        reviewed += 1
    for item_id in truth:  # back to the queue for the next order
        store.reassign(item_id)
    return out


def run(train_items: int, steps: int, queue_items: int) -> dict:
    from annotate.store import Store
    from model.loader import LoadConfig, load_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "train").mkdir()
        adapter = partly_trained(make_export(folder / "train", train_items), folder / "lora", steps)
        vlm = load_model(LoadConfig(model="demo", adapter=str(adapter)))
        with Store(f"sqlite:///{folder / 'q.db'}", folder / "data", seed=0) as store:
            truth = queue_new_shapes(store, vlm, folder / "new", queue_items)
            random.seed(0)
            curves = {order: curve(store, truth, order) for order in ("fifo", "confidence", "random")}
    area = {order: round(sum(c) / len(c), 4) for order, c in curves.items()}
    return {"benchmark": "edit rate left in the unreviewed remainder, by review order", "items": len(truth),
            "train_steps": steps, "fractions_reviewed": [k / 10 for k in range(11)], "curves": curves,
            "area": area, "target": "confidence area < fifo area", "pass": area["confidence"] < area["fifo"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-items", type=int, default=330)
    parser.add_argument("--steps", type=int, default=120, help="training steps before captioning (default 120)")
    parser.add_argument("--queue-items", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print JSON on one line")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.train_items, args.steps, args.queue_items), indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

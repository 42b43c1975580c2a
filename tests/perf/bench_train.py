"""Training benchmarks on the demo model (CPU unless a GPU is present), measured in one run.

    python -m tests.perf.bench_train [--items 330] [--steps 60] [--repeats 2] [--no-full-run] [--json]

1. Throughput of the real train path (train.trainer: TRL SFTTrainer, LoRA, the product's data
   pipeline) against a minimal hand-written torch loop doing the same steps: the same LoRA model,
   AdamW, cosine schedule, batch size, images decoded and tokenized per step, loss on the answer
   only. Both run `--steps` optimizer steps, alternating, `--repeats` times; the best of each
   counts. Target: real / hand >= 0.8.
2. The synthetic-set training of the proof test (`python app.py train` with the demo model's
   defaults on shapes that went through the real queue and export): wall time, the training
   loop's own time, peak memory of the training process, held-out token F1 after.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BATCH = 16  # the demo model's default batch size


def make_export(folder: Path, items: int) -> Path:
    from annotate.store import Store
    from tests.train_support import approve_shapes, export_to

    with Store(f"sqlite:///{folder / 'studio.db'}", folder / "data") as store:
        approve_shapes(store, items, seed=0)
        return export_to(store, folder / "export", "llava", split=0.8)


def real_path(data: Path, out: Path, steps: int) -> float:
    """Samples/s of train.trainer.train's training loop (model loading and saving excluded)."""
    from train.options import TrainOptions
    from train.trainer import train

    train(TrainOptions(data=str(data), base="demo", out=str(out), max_steps=steps, batch_size=BATCH,
                       save_steps=steps + 1))
    metrics = json.loads((out / "metrics.json").read_text())
    return steps * BATCH / metrics["runtime_s"]


def hand_loop(data: Path, steps: int) -> float:
    """The same steps written by hand: samples/s of the loop."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import get_cosine_schedule_with_warmup

    from model.images import load_image
    from model.loader import LoadConfig, load_model
    from train.data import ExportData, prompt_and_completion
    from train.options import DEMO_DEFAULTS as D
    from train.trainer import LLM_LINEAR

    torch.manual_seed(0)
    vlm = load_model(LoadConfig(model="demo"))
    config = LoraConfig(r=D.lora_r, lora_alpha=D.lora_alpha, lora_dropout=0.05, target_modules=LLM_LINEAR,
                        modules_to_save=["multi_modal_projector", "lm_head", "embed_tokens"])
    model = get_peft_model(vlm.model, config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=D.lr, weight_decay=0.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, max(1, int(0.03 * steps)), steps)
    examples = ExportData(data).split("train")
    texts = [prompt_and_completion(vlm, e.prompt, e.answer) for e in examples]
    processor, tokenizer = vlm.processor, vlm.processor.tokenizer
    order = random.Random(0)
    began = time.perf_counter()
    for _ in range(steps):
        picked = order.sample(range(len(examples)), BATCH)
        images = [load_image(examples[i].image) for i in picked]
        prompts = processor(images=images, text=[texts[i][0] for i in picked], padding=True, padding_side="left",
                            add_special_tokens=False, return_tensors="pt")
        answers = tokenizer([texts[i][1] for i in picked], padding=True, padding_side="right",
                            add_special_tokens=False, return_tensors="pt")
        input_ids = torch.cat([prompts["input_ids"], answers["input_ids"]], dim=1)  # (batch, prompt + answer)
        mask = torch.cat([prompts["attention_mask"], answers["attention_mask"]], dim=1)
        labels = input_ids.clone()
        labels[:, : prompts["input_ids"].shape[1]] = -100  # loss on the answer only
        labels[mask == 0] = -100
        loss = model(input_ids=input_ids, attention_mask=mask, pixel_values=prompts["pixel_values"],
                     labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * BATCH / (time.perf_counter() - began)


def throughput(data: Path, folder: Path, steps: int, repeats: int) -> dict:
    real, hand = [], []
    for i in range(repeats):  # alternate, so a busy machine slows both alike
        real.append(real_path(data, folder / f"bench-real-{i}", steps))
        hand.append(hand_loop(data, steps))
    ratio = max(real) / max(hand)
    return {"benchmark": "train throughput: real path vs hand-written loop", "steps": steps, "batch": BATCH,
            "real_samples_per_s": round(max(real), 1), "hand_samples_per_s": round(max(hand), 1),
            "all_real": [round(x, 1) for x in real], "all_hand": [round(x, 1) for x in hand],
            "ratio": round(ratio, 3), "target": ">= 0.8", "pass": ratio >= 0.8}


def full_run(data: Path, folder: Path) -> dict:
    """`python app.py train` with the demo defaults, then `eval` of the held-out split."""
    out = folder / "shapes-lora"
    began = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "app.py"), "train", "--data", str(data), "--base", "demo",
                    "--out", str(out)], cwd=REPO, check=True, capture_output=True)
    wall = time.perf_counter() - began
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    evaluated = subprocess.run([sys.executable, str(REPO / "app.py"), "eval", "--model", "demo", "--adapter",
                                str(out), "--data", str(data)], cwd=REPO, check=True, capture_output=True, text=True)
    scores = json.loads(evaluated.stdout.strip().splitlines()[-1])["metrics"]
    metrics = json.loads((out / "metrics.json").read_text())
    return {"benchmark": "synthetic-set training (app.py train, demo defaults)", "train_items": metrics["train_items"],
            "steps": metrics["steps"], "wall_s": round(wall, 1), "train_loop_s": metrics["runtime_s"],
            "samples_per_s": metrics["samples_per_s"], "peak_rss_mb": round(peak_mb),
            "heldout_token_f1": scores["token_f1"], "heldout_bleu4": scores["bleu4"], "heldout_n": scores["n"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=330, help="synthetic items through the queue (default 330)")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per throughput run (default 60)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each loop (default 2)")
    parser.add_argument("--no-full-run", action="store_true", help="skip the synthetic-set training")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        folder = Path(tmp)
        data = make_export(folder, args.items)
        results = [throughput(data, folder, args.steps, args.repeats)]
        if not args.no_full_run:
            results.append(full_run(data, folder))
    for result in results:
        print(json.dumps(result) if args.json else "\n".join(f"  {k}: {v}" for k, v in result.items()), flush=True)
    return 0 if all(r.get("pass", True) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

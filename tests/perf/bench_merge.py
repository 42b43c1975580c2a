"""`train --merge` peak host memory: in place (train/merge.py) vs reloading the base (the old way).

    python -m tests.perf.bench_merge [--hidden 1024] [--layers 8] [--json]

A HumanVLM-configured checkpoint (tests/humanvlm_checkpoint.py: the real vocabulary of 128320,
SigLIP at 384 px, float16 weights, several shards) is built with larger sizes, loaded on the CPU
through the product's loader in float32 (as CPU training does), given HumanVLM's stage-two LoRA
(r=128 on the language model and the vision tower, projector trained), then merged and saved:

- `in_place`: `train.merge.merge_into`: the deltas added to the weights in memory, cast to the
  base's saved float16, written in shards, made portable;
- `reload`: what `--merge` did before: the trained model stays in memory while a second copy of
  the base is loaded, the adapter applied to it and merged, then saved.

Each runs in its own process. Peak RSS is sampled every 5 ms during the merge (psutil); the
process's RSS just before the merge is the model being trained. Target: in place adds less than
half of what the reload adds, and never a second copy of the model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[2]
MB = 2**20


class PeakRss:
    """Highest resident set size of this process while the block runs (sampled)."""

    def __enter__(self):
        import psutil

        self._proc, self._stop, self.peak = psutil.Process(), threading.Event(), 0
        self.before = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def one_run(mode: str, base: str, out: str) -> dict:
    """Load and wrap as training does, then merge the chosen way. Runs in a fresh process."""
    from model.loader import LoadConfig, load_model
    from train.options import TrainOptions, resolve
    from train.trainer import prepare_model

    options = TrainOptions(data="-", base=base, out=out, merge=True)
    vlm = load_model(LoadConfig(model=base, device="cpu", dtype="float32", quant="none"))
    _, peft_config = prepare_model(vlm.model, resolve(options, is_demo=False))
    from peft import get_peft_model

    trained = get_peft_model(vlm.model, peft_config)
    trained.save_pretrained(out)  # what trainer.save_model leaves in OUT before the merge
    params = sum(p.numel() for p in vlm.model.parameters())
    began = time.perf_counter()
    with PeakRss() as rss:
        if mode == "in_place":
            from train.merge import merge_into

            merge_into(Path(out), options, vlm, trained)
        else:
            _old_merge(Path(out), options, vlm)
    return {"mode": mode, "parameters": params, "seconds": round(time.perf_counter() - began, 1),
            "rss_before_mb": round(rss.before / MB), "peak_rss_mb": round(rss.peak / MB),
            "added_mb": round((rss.peak - rss.before) / MB),
            "written_mb": round(sum(p.stat().st_size for p in Path(out).glob("*.safetensors")) / MB)}


def _old_merge(out: Path, options, vlm) -> None:
    """The previous implementation of `--merge`, verbatim in effect."""
    from peft import PeftModel

    from model.loader import LoadConfig, load_model
    from train.merge import _move_adapter

    adapter_dir = _move_adapter(out)
    base = load_model(LoadConfig(model=options.base, device="cpu", dtype=vlm.info.dtype, quant="none"))
    merged = PeftModel.from_pretrained(base.model, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out))
    base.processor.save_pretrained(str(out))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=1024, help="language model hidden size (HumanVLM: 4096)")
    parser.add_argument("--layers", type=int, default=8, help="language model layers (HumanVLM: 32)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", nargs=3, metavar=("MODE", "BASE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_run(*args.one)))
        return 0
    from tests.humanvlm_checkpoint import build_checkpoint

    root = Path(tempfile.mkdtemp(prefix="bench-merge-"))
    base = build_checkpoint(root / "base", text=dict(hidden_size=args.hidden, intermediate_size=args.hidden * 11 // 4,
                                                     num_hidden_layers=args.layers, num_attention_heads=16),
                            vision=dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=4,
                                        num_attention_heads=6), max_shard_size="200MB")
    runs = []
    for mode in ("in_place", "reload"):
        proc = subprocess.run([sys.executable, "-m", "tests.perf.bench_merge", "--one", mode, str(base),
                               str(root / mode)], cwd=REPO, capture_output=True, text=True, timeout=1800)
        if proc.returncode:
            sys.exit(f"{mode} failed:\n{proc.stderr[-3000:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    in_place, reload = runs
    result = {"runs": runs, "fp32_model_mb": round(in_place["parameters"] * 4 / MB),
              "added_ratio_in_place_vs_reload": round(in_place["added_mb"] / max(1, reload["added_mb"]), 2)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"model: {in_place['parameters'] / 1e6:.0f} M parameters ({result['fp32_model_mb']} MB in float32)")
        for run in runs:
            print(f"  {run['mode']:>8}: RSS {run['rss_before_mb']} MB before the merge, peak {run['peak_rss_mb']} MB "
                  f"(+{run['added_mb']} MB), {run['seconds']} s, {run['written_mb']} MB written")
        print(f"  memory added by the merge, in place / reload: {result['added_ratio_in_place_vs_reload']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

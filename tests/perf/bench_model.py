"""Live-demo benchmarks on the demo model (CPU), each a ratio measured in one run.

    python -m tests.perf.bench_model [--repeats 5] [--json]

1. streaming path (`VLM.stream`: worker thread, token queue, incremental decoding; and with
   the confidence recorded, as the Caption & Chat tab streams) vs the bare way (processor, `model.generate`, decode) from the same image and prompt to the
   same text: total time ratio, median of alternating runs (target <= 1.10);
2. batched captioning (batch 8, one `generate`) vs one image at a time: images/s ratio
   (target >= 3x);
3. `python app.py` to the first HTTP 200 with the demo model (target <= 15 s);
4. `python app.py queue stats`, a command that needs neither the model nor the UI (target <= 2 s).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOKENS = 128


def _best(fn, repeats: int) -> float:
    """Median wall time of `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def bench_streaming(vlm, image, repeats: int) -> dict:
    """Image + prompt -> text both ways: the bare way (processor, `model.generate`, decode)
    and the product's streaming path. Runs alternate so both see the same machine state."""
    import torch

    from model.generate import GenerationSettings

    settings = GenerationSettings(max_new_tokens=TOKENS)
    turns = [("Describe this photo of a person in detail.", None)]
    kwargs = vlm._gen_kwargs(settings)
    tok = vlm.processor.tokenizer

    def bare_here():
        inputs = vlm._inputs([image], [vlm.prompt_text(turns)])
        with torch.inference_mode():
            out = vlm.model.generate(**inputs, **kwargs)
        return tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    # On a thread of its own, as the streaming path generates: a thread's tensor ops get their own
    # OpenMP team, and the comparison is of the paths, not of the threads.
    def bare():
        return _on_a_thread(bare_here)

    def streamed():
        return "".join(vlm.stream(image, turns, settings))

    def scored():  # as the Caption & Chat tab streams: recording the answer's confidence too
        return "".join(piece for piece in vlm.stream(image, turns, settings, scores=True) if isinstance(piece, str))

    assert bare().strip() == streamed().strip() == scored().strip(), "all paths must produce the same text"
    times = {"bare": [], "streamed": [], "scored": []}
    for _ in range(repeats):
        for name, fn in (("bare", bare), ("streamed", streamed), ("scored", scored)):
            began = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - began)
    b, s, c = (statistics.median(times[k]) for k in ("bare", "streamed", "scored"))
    return {"bare_generate_s": round(b, 4), "streaming_s": round(s, 4), "ratio": round(s / b, 3),
            "target": "<= 1.10", "streaming_with_confidence_s": round(c, 4),
            "ratio_with_confidence": round(c / b, 3), "new_tokens": TOKENS, "runs": repeats}


def _on_a_thread(fn):
    import threading

    out = []
    worker = threading.Thread(target=lambda: out.append(fn()))
    worker.start()
    worker.join()
    return out[0]


def bench_batching(vlm, image, repeats: int, batch: int = 8) -> dict:
    from model.generate import GenerationSettings

    settings = GenerationSettings(max_new_tokens=TOKENS)
    images = [image.rotate(15 * i) for i in range(batch)]
    prompt = "Describe this photo of a person in one sentence."

    def one_by_one():
        for im in images:
            vlm.caption_batch([im], prompt, settings)

    def batched():
        vlm.caption_batch(images, prompt, settings)

    t_single, t_batch = _best(one_by_one, repeats), _best(batched, repeats)
    return {"one_at_a_time_img_per_s": round(batch / t_single, 2), "batch8_img_per_s": round(batch / t_batch, 2),
            "ratio": round(t_single / t_batch, 2), "target": ">= 3"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_startup(cache_dir: str) -> dict:
    """Seconds from launching `python app.py` to the first HTTP 200 (demo model already built)."""
    port = _free_port()
    env = os.environ | {"HUMANVLM_CACHE": cache_dir, "HUMANVLM_DATA_DIR": tempfile.mkdtemp(), "HF_HUB_OFFLINE": "1"}
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - began < 120:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                    if r.status == 200:
                        return {"seconds_to_first_200": round(time.perf_counter() - began, 2), "target": "<= 15"}
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the app did not answer within 120 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def bench_cli_startup(repeats: int = 5) -> dict:
    """Median seconds of `python app.py queue stats` on an empty queue: a queue command that
    loads neither the model nor the web UI."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            began = time.perf_counter()
            subprocess.run([sys.executable, "app.py", "queue", "stats", "--db", f"sqlite:///{tmp}/q.db",
                            "--data-dir", tmp], cwd=REPO, check=True, capture_output=True)
            times.append(time.perf_counter() - began)
    return {"queue_stats_s": round(statistics.median(times), 2), "target": "<= 2"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    cache = tempfile.mkdtemp(prefix="bench-cache-")
    os.environ["HUMANVLM_CACHE"] = cache
    from model.images import load_image
    from model.loader import LoadConfig, load_model

    vlm = load_model(LoadConfig(model="demo"))
    image = load_image(REPO / "static" / "examples" / "astronaut.png")
    import torch

    results = {"machine": f"{os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads"}
    for name, run in (("streaming_vs_generate", lambda: bench_streaming(vlm, image, args.repeats)),
                      ("batch8_vs_single", lambda: bench_batching(vlm, image, args.repeats)),
                      ("startup", lambda: bench_startup(cache)), ("cli_startup", bench_cli_startup)):
        results[name] = run()
        print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    print(json.dumps(results, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

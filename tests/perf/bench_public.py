"""A public Space's queue under load: 8 anonymous visitors caption at once; how long does a
ninth wait for its first token, and is the queue first come, first served?

    python -m tests.perf.bench_public [--visitors 8] [--tokens 64] [--json]

The app runs in public mode (anonymous visitors) with the demo model, served as `serve`
serves it; every visitor streams a caption through the UI's own streaming event. Reported:
one caption alone (first token, total), the ninth visitor's wait for its first token with 8
ahead of it, that wait in units of one caption, and the order in which visitors got their first
token (fair = the order they arrived).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "static" / "examples" / "astronaut.png"


def _caption(url: str, tokens: int, arrived: list, first: dict, done: dict, key: int) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False)  # a browser fetches a shown file by its URL, once
    job = client.submit(handle_file(str(PHOTO)), "detailed", "", tokens, 0.0, 0.9, 1.0, api_name="/ui_caption")
    arrived.append((time.perf_counter(), key))
    for _update in job:
        first.setdefault(key, time.perf_counter())
    job.result()
    done[key] = time.perf_counter()


def measure(visitors: int = 8, tokens: int = 64) -> dict:
    from app.policy import Policy, resolve_access
    from app.serve import launch
    from app.ui import Services, build_app
    from model.loader import LoadConfig
    from model.slot import ModelSlot

    access = resolve_access("127.0.0.1", public=True, env={})
    services = Services(slot=ModelSlot(LoadConfig(model="demo")), policy=Policy(access))
    services.slot.get()
    app = launch(build_app(services), access, "127.0.0.1", None, prevent_thread_lock=True, quiet=True)
    url = app.local_url
    try:
        alone = []
        for i in range(3):  # one visitor at a time (first run warms up)
            began, first, done = time.perf_counter(), {}, {}
            _caption(url, tokens, [], first, done, i)
            alone.append((first[i] - began, done[i] - began))
        first_alone = statistics.median(a[0] for a in alone[1:])
        total_alone = statistics.median(a[1] for a in alone[1:])

        arrived, first, done, threads = [], {}, {}, []
        for key in range(visitors):
            t = threading.Thread(target=_caption, args=(url, tokens, arrived, first, done, key))
            t.start()
            threads.append(t)
            time.sleep(0.05)  # arrive in a known order
        time.sleep(0.5)
        began = time.perf_counter()
        ninth = threading.Thread(target=_caption, args=(url, tokens, arrived, first, done, visitors))
        ninth.start()
        for t in [*threads, ninth]:
            t.join()
        wait = first[visitors] - began
        order = [k for k, _ in sorted(first.items(), key=lambda kv: kv[1])]
        arrival = [k for _, k in sorted(arrived)]
        return {"visitors_ahead": visitors, "tokens": tokens, "alone_first_token_s": round(first_alone, 3),
                "alone_caption_s": round(total_alone, 3), "ninth_first_token_wait_s": round(wait, 3),
                "wait_in_captions": round(wait / total_alone, 2),
                "arrival_order": arrival, "first_token_order": order, "fifo": order == arrival,
                "ninth_served_last": order[-1] == visitors}
    finally:
        app.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.visitors, args.tokens)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"one caption alone: first token {result['alone_first_token_s']} s, whole caption "
              f"{result['alone_caption_s']} s ({args.tokens} tokens)")
        print(f"with {args.visitors} anonymous visitors ahead, a ninth waits {result['ninth_first_token_wait_s']} s "
              f"for its first token = {result['wait_in_captions']} captions' time")
        print(f"first tokens in arrival order: {result['fifo']} (arrived {result['arrival_order']}, "
              f"served {result['first_token_order']}); the ninth served last: {result['ninth_served_last']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

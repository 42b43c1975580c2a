"""The same review work through this app's HTTP API and through Label Studio's REST API.

    python -m tests.perf.bench_vs_labelstudio [--items 1000] [--clients 8]

One queue of `--items` small photos is pushed to a real Label Studio server (started here from the
test template, tests/labelstudio_server.py) with `labelstudio push`. Then, one after the
other: `--clients` threads create one caption annotation per task through Label Studio's REST
API (the SDK's `annotations.create`; open-source Label Studio has no atomic "next task" for one
API user, so each client takes its own slice of the tasks, which favours Label Studio), and
`--clients` signed-in reviewers claim and approve every item of the same queue through this
app's HTTP API (`/review_claim`, `/review_approve`). Reports reviews/s of both and the ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path


def annotate_in_labelstudio(url: str, token: str, project_id: int, clients: int) -> tuple[int, list[str], float]:
    from label_studio_sdk import LabelStudio

    from annotate.labelstudio import textarea_results

    tasks = [t.id for t in LabelStudio(base_url=url, api_key=token).tasks.list(project=project_id, fields="all")]
    done, errors, lock = [0], [], threading.Lock()

    def work(part: list[int]):
        ls = LabelStudio(base_url=url, api_key=token, timeout=60)
        try:
            for task_id in part:
                ls.annotations.create(id=task_id, result=textarea_results({"caption": f"corrected {task_id}"}))
                with lock:
                    done[0] += 1
        except Exception as exc:  # reported below
            errors.append(repr(exc)[:300])

    threads = [threading.Thread(target=work, args=(tasks[i::clients],)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done[0], errors, time.perf_counter() - start


def run(items: int, clients: int) -> dict:
    from annotate.labelstudio import push
    from annotate.store import Store
    from tests.labelstudio_server import WARM_START_TIMEOUT_S, ensure_template, start_server, stop_server
    from tests.perf.bench_api_review import review_through_api, seed_photos

    template, creds = ensure_template()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copytree(template / "data", work / "data")
        proc, ls_url = start_server(work, creds, WARM_START_TIMEOUT_S)
        try:
            with Store(f"sqlite:///{work / 'q.db'}", work / "qdata") as store:
                seed_photos(store, items)
                pushed = push(store, ls_url, creds.token, project="bench")
                ls_done, ls_errors, ls_seconds = annotate_in_labelstudio(ls_url, creds.token, pushed.project_id,
                                                                         clients)
                app_done, app_errors, app_seconds = review_through_api(store, clients)
                approved = store.counts()["approved"]
        finally:
            stop_server(proc)
    ours, theirs = len(app_done) / app_seconds, ls_done / ls_seconds
    return {"benchmark": "reviews through the HTTP API: this app vs Label Studio", "items": items, "clients": clients,
            "app_reviews_per_s": round(ours, 1), "labelstudio_reviews_per_s": round(theirs, 1),
            "ratio": round(ours / theirs, 2), "app_reviews": len(app_done), "app_approved": approved,
            "labelstudio_annotations": ls_done, "errors": (app_errors + ls_errors)[:3]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print JSON on one line")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.items, args.clients), indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

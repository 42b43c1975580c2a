"""`labelstudio push` and `labelstudio pull`: the review queue and a Label Studio project.

A thin layer over `annotate.labelstudio` and `annotate.labelstudio_pull`: parse flags, open the
store, call, print a summary. The token comes from --token or LABEL_STUDIO_API_KEY (never a
default); the server URL from --url or LABEL_STUDIO_URL. Exit status: 0 done, 1 (PARTIAL) items
or annotations were left out (each reported on stderr), 2 nothing was done (a clear error).
"""

from __future__ import annotations

import argparse
import os
import sys

from annotate.labelstudio import DEFAULT_PROJECT, BadToken  # light: the SDK loads on first use


def register(subparsers) -> None:
    from annotate.cli import add_store_arguments

    parser = subparsers.add_parser(
        "labelstudio", help="push pending items to Label Studio, pull the annotations back",
        description="Review in Label Studio: `push` sends pending queue items as tasks with the "
        "model draft as a prediction (an item needing N reviews asks N annotators; gold items stay "
        "back); `pull` brings the annotations back as approved corrections, or as each annotator's "
        "own review. Exit status 1 when annotations or items were left out (each reported).",
    )
    commands = parser.add_subparsers(dest="labelstudio_command", metavar="{push,pull}", required=True)
    push = commands.add_parser("push", help="create or reuse the project and add pending items as tasks")
    pull = commands.add_parser("pull", help="apply the project's annotations to the queue (idempotent)")
    for sub in (push, pull):
        _add_server_arguments(sub)
        add_store_arguments(sub)
    push.add_argument("--limit", type=int, default=None, metavar="N",
                      help="push at most N new tasks (default: every pending item)")
    push.set_defaults(func=run_push)
    pull.set_defaults(func=run_pull)


def _add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("LABEL_STUDIO_URL"),
                        required=not os.environ.get("LABEL_STUDIO_URL"),
                        help="Label Studio base URL, e.g. http://localhost:8080 "
                        "(default: $LABEL_STUDIO_URL)")
    parser.add_argument("--token", default=None,
                        help="API token from Label Studio's Account & Settings (legacy token or "
                        "personal access token; default: $LABEL_STUDIO_API_KEY)")
    parser.add_argument("--project", default=DEFAULT_PROJECT,
                        help=f"project title, matched exactly (default: {DEFAULT_PROJECT!r})")


def _token(args) -> str:
    token = args.token or os.environ.get("LABEL_STUDIO_API_KEY", "")
    if not token:
        raise BadToken(args.url, missing=True)
    return token


def run_push(args) -> int:
    from tqdm import tqdm

    from annotate.cli import PARTIAL, open_store
    from annotate.labelstudio import push

    token = _token(args)
    with open_store(args) as store:
        total = store.counts()["pending"]
        if args.limit is not None:
            total = min(total, args.limit)
        with tqdm(total=total, unit="task", desc="push", disable=None) as bar:
            result = push(store, args.url, token, project=args.project, limit=args.limit,
                          progress=bar.update)
    created = "created" if result.project_created else "existing"
    print(f"{result.pushed} tasks pushed to {created} project {result.project_title!r} "
          f"(id {result.project_id}) at {args.url}; {result.already_pushed} pending items "
          f"were already there; {result.gold} gold items kept back")
    for item_id, why in result.failed:
        print(f"item {item_id} not pushed: {why}", file=sys.stderr)
    return PARTIAL if result.failed else 0


def run_pull(args) -> int:
    from annotate.cli import PARTIAL, open_store
    from annotate.labelstudio_pull import pull

    token = _token(args)
    with open_store(args) as store:
        result = pull(store, args.url, token, project=args.project)
    print(f"{result.approved} approved, {result.skipped} skipped, {result.reviews} reviews recorded "
          f"({result.decided} items decided, {result.waiting} waiting for more reviewers), "
          f"{result.unchanged} unchanged, {len(result.conflicts)} left out, {result.unknown} tasks "
          f"not from this queue (project {args.project!r}, id {result.project_id})")
    for item_id, why in result.conflicts:
        print(f"item {item_id} left as it is: {why}", file=sys.stderr)
    return PARTIAL if result.conflicts else 0

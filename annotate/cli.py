"""Command line for the review queue: `queue add|import|list|show|stats|reassign` and `export`.

A thin layer over `annotate.store.Store`: every handler parses, calls the API, prints. Named
errors (`user_facing = True`) are turned into `error: ...` and exit 2 by app/cli.py.
`--db URL` (and `--data-dir DIR`) is accepted by every command that opens the store, anywhere
among its options; `add_store_arguments` and `open_store` are reused by the Label Studio CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

from annotate import team_cli
from annotate.db import DATA_DIR_ENV, DB_URL_ENV
from annotate.records import ORDERS, STATUSES


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a value given before the subcommand is not overwritten by the subparser's
    # default, so `queue --db X stats` and `queue stats --db X` both work.
    parser.add_argument("--db", metavar="URL", default=argparse.SUPPRESS,
                        help=f"database URL (default ${DB_URL_ENV}, else sqlite:///DATA_DIR/studio.db)")
    parser.add_argument("--data-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help=f"data folder for the database and images (default ${DATA_DIR_ENV}, else /data when writable, else ./data)")


# Exit status of commands that work through many rows: 0 everything went in (or out), PARTIAL
# the command finished but rows or items were left out (each reported), 2 nothing was done.
PARTIAL = 1


CLAIM_ORDER_ENV = "HUMANVLM_CLAIM_ORDER"
GOLD_RATE_ENV = "HUMANVLM_GOLD_RATE"


def add_review_arguments(parser: argparse.ArgumentParser) -> None:
    """How claims pick items (for `serve`, where reviewers claim)."""
    parser.add_argument("--order", choices=ORDERS, default=os.environ.get(CLAIM_ORDER_ENV, "fifo"),
                        help=f"which pending item a claim takes: queue order, least confident model draft first, or "
                             f"random (default fifo, or ${CLAIM_ORDER_ENV})")
    parser.add_argument("--gold-rate", type=float, default=float(os.environ.get(GOLD_RATE_ENV, 0.0)), metavar="P",
                        help=f"chance (0-1) that a claim serves a gold item the reviewer has not done yet "
                             f"(default 0, or ${GOLD_RATE_ENV})")


def open_store(args: argparse.Namespace):
    from annotate.store import Store

    return Store(getattr(args, "db", None), getattr(args, "data_dir", None),
                 order=getattr(args, "order", "fifo"), gold_rate=getattr(args, "gold_rate", 0.0))


def register(subparsers) -> None:
    queue = subparsers.add_parser("queue", help="review queue: add, import, list, show, stats, reassign",
                                  description="Manage the caption review queue.")
    add_store_arguments(queue)
    actions = queue.add_subparsers(dest="queue_action", metavar="ACTION", required=True)
    _register_add(actions)
    _register_import(actions)
    team_cli.register(actions)  # disagreements, adjudicate

    listing = actions.add_parser("list", help="list items, optionally of one status")
    listing.add_argument("--status", choices=STATUSES, help="only items with this status")
    listing.add_argument("--limit", type=int, default=50, help="at most this many items (default 50)")
    listing.add_argument("--after", type=int, default=0, metavar="ID", help="start after this item id")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=run_list)

    show = actions.add_parser("show", help="show one item: image, draft, caption, fields, history")
    show.add_argument("item_id", type=int, metavar="ID")
    show.add_argument("--json", action="store_true", help="print the item as JSON")
    show.set_defaults(func=run_show)

    stats = actions.add_parser("stats", help="counts per status, per reviewer and per model version")
    stats.add_argument("--json", action="store_true", help="print the statistics as JSON")
    stats.set_defaults(func=run_stats)

    reassign = actions.add_parser("reassign", help="put items back to pending (claim and decision cleared)")
    reassign.add_argument("item_ids", type=int, nargs="+", metavar="ID")
    reassign.set_defaults(func=run_reassign)
    for parser in (listing, show, stats, reassign):
        add_store_arguments(parser)
    _register_export(subparsers)


def _register_add(actions) -> None:
    from model.cli import add_generation_arguments
    from model.loader import add_model_arguments
    from model.prompts import DEFAULT_PRESET, PRESETS

    add = actions.add_parser("add", help="caption images or folders with the model into the queue",
                             description="Caption photos in batches and queue the captions as drafts "
                                         "for review. Re-running skips photos already queued.")
    add.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    group = add.add_mutually_exclusive_group()
    group.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET,
                       help=f"caption preset (default {DEFAULT_PRESET})")
    group.add_argument("--prompt", help="free-text prompt instead of a preset")
    add.add_argument("--batch-size", type=int, default=4, help="images per generate call (default 4)")
    add.add_argument("--licence", help="licence of the photos, recorded with each image")
    add.add_argument("--consent", help="consent note for the photos, recorded with each image")
    add.add_argument("--overlap", type=int, default=1, metavar="N",
                     help="independent reviews per item, by N different reviewers (default 1)")
    add_model_arguments(add)
    add_generation_arguments(add)
    add_store_arguments(add)
    add.set_defaults(func=run_add)


def _register_import(actions) -> None:
    imp = actions.add_parser("import", help="import HumanCaption-HQ/10M parquet or LLaVA JSON as drafts",
                             description="Import dataset rows as drafts to review. Malformed rows are "
                                         "reported by row number (0-based) and skipped.")
    imp.add_argument("files", nargs="+", metavar="FILE",
                     help=".parquet (HumanCaption-HQ / 10M) or .json (LLaVA) files, or folders of them "
                          "(such as this app's exports)")
    imp.add_argument("--fetch-images", action="store_true",
                     help="download images given by URL (public addresses only); default: keep the URLs")
    imp.add_argument("--licence", help="licence recorded with each imported image")
    imp.add_argument("--chunk-rows", type=int, default=5000, help="rows per transaction (default 5000)")
    imp.add_argument("--overlap", type=int, default=1, metavar="N",
                     help="independent reviews per item, by N different reviewers (default 1)")
    imp.add_argument("--gold", action="store_true",
                     help="the captions are references: gold items mixed into claims to score reviewers, never exported")
    imp.add_argument("--json", action="store_true", help="print the result of each file as JSON")
    add_store_arguments(imp)
    imp.set_defaults(func=run_import)


def _register_export(subparsers) -> None:
    from annotate.export import FORMATS

    exp = subparsers.add_parser("export", help="export reviewed captions (HumanCaption-HQ parquet or LLaVA JSON)",
                                description="Write reviewed items to a folder, atomically: a failed export "
                                            "leaves the previous one intact.")
    exp.add_argument("--format", choices=FORMATS, default="humancaptionhq", help="output format (default humancaptionhq)")
    exp.add_argument("--out", required=True, metavar="DIR", help="export folder (new, empty, or a previous export)")
    exp.add_argument("--status", choices=STATUSES, default="approved", help="items to export (default approved)")
    exp.add_argument("--blur-faces", action="store_true", help="blur detected faces in the exported images")
    exp.add_argument("--split", type=float, default=0.9,
                     help="fraction of images (by hash) in the train split; the rest are held out (default 0.9)")
    exp.add_argument("--json", action="store_true", help="print the result as JSON")
    exp.add_argument("--push-to", metavar="OWNER/NAME",
                     help="then upload the folder as a Hugging Face dataset repository (token: $HF_TOKEN or "
                          "`hf auth login`)")
    exp.add_argument("--private", action="store_true", help="with --push-to: create the repository private")
    add_store_arguments(exp)
    exp.set_defaults(func=run_export)


def run_add(args) -> int:
    from tqdm import tqdm

    from annotate.batch import caption_into_queue
    from model.cli import expand_paths, settings_from_args
    from model.loader import config_from_args, load_model
    from model.prompts import resolve_prompt

    paths = expand_paths(args.paths)
    if not paths:
        print("error: no images found in the given paths", file=sys.stderr)
        return 1
    store = open_store(args)
    vlm = load_model(config_from_args(args))
    if vlm.info.is_demo and vlm.info.note:
        print(vlm.info.note, file=sys.stderr)
    with tqdm(total=len(paths), unit="img", file=sys.stderr) as bar:
        result = caption_into_queue(
            store, vlm, paths, resolve_prompt(args.preset, args.prompt), "custom" if args.prompt else args.preset,
            settings_from_args(args), args.batch_size, args.licence, args.consent, progress=bar.update,
            overlap=args.overlap,
        )
    for failure in result.failed:
        print(f"{failure}", file=sys.stderr)
    print(result.summary())
    return 1 if result.failed else 0


def run_import(args) -> int:
    from tqdm import tqdm

    from annotate.importers import count_rows, dataset_files, import_file

    store = open_store(args)
    bad_rows = 0
    for path in [file for given in args.files for file in dataset_files(given)]:
        # delay: no bar for quick imports, nor before an error about the file itself.
        with tqdm(total=count_rows(path), unit="row", desc=str(path), file=sys.stderr, disable=args.json,
                  delay=0.5) as bar:
            result = import_file(store, path, fetch_images=args.fetch_images, chunk_rows=args.chunk_rows,
                                 progress=bar.update, licence=args.licence, overlap=args.overlap, gold=args.gold)
        if args.json:
            print(json.dumps(asdict(result)))
            continue
        print(result.summary())
        for reason in result.bad_reasons:
            print(f"  bad {reason}")
        if result.bad > len(result.bad_reasons):
            print(f"  ... and {result.bad - len(result.bad_reasons)} more bad rows")
        bad_rows += result.bad
    return PARTIAL if bad_rows else 0  # rows were left out: say so to scripts too


def run_list(args) -> int:
    for item in open_store(args).list_items(args.status, args.limit, args.after):
        if args.json:
            print(json.dumps(_item_json(item), ensure_ascii=False))
        else:
            where = item.image.path or item.image.url
            print(f"{item.id}\t{item.status}\t{item.claimed_by or item.decided_by or '-'}\t{where}")
    return 0


def run_show(args) -> int:
    item = open_store(args).get_item(args.item_id)
    data = _item_json(item)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    print(f"item {item.id}: {item.status} (version {item.version})")
    print(f"image: {item.image.path or item.image.url} (sha256 {item.image.sha256[:12]}...)")
    print(f"draft ({item.draft.model_name} {item.draft.model_version}): {item.draft.caption}")
    print(f"caption: {item.caption}")
    for name, value in item.fields.items():
        print(f"  {name}: {value}")
    if item.reject_reason:
        print(f"rejected: {item.reject_reason}")
    for action in item.actions:
        undone = " (undone)" if action.undone else ""
        print(f"  {action.created_at:%Y-%m-%d %H:%M:%S} {action.action} by {action.reviewer or '-'}{undone}")
    return 0


def run_stats(args) -> int:
    stats = open_store(args).stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print("status:   " + "  ".join(f"{k} {v}" for k, v in stats["by_status"].items()) + f"  (total {stats['total']})")
    for name, row in stats["by_reviewer"].items():
        rate = "-" if row["mean_edit_rate"] is None else f"{row['mean_edit_rate']:.3f}"
        print(f"reviewer {name}: approved {row['approved']}, rejected {row['rejected']}, skipped {row['skipped']}, "
              f"corrections {row['corrections']}, in review {row['in_review']}, mean edit rate {rate}")
    for row in stats["by_model_version"]:
        rate = "-" if row["approval_rate"] is None else f"{row['approval_rate']:.1%}"
        edit = "-" if row["mean_edit_rate"] is None else f"{row['mean_edit_rate']:.3f}"
        print(f"model {row['model_name']} {row['model_version']}: {row['total']} items, "
              f"approval rate {rate}, mean edit rate {edit}")
    _print_team_stats(stats)
    return 0


def _print_team_stats(stats: dict) -> None:
    agreement, gold = stats["agreement"], stats["gold"]
    if agreement["items"]:
        per = ", ".join(f"{who} {value:.3f}" for who, value in agreement["by_reviewer"].items())
        print(f"agreement (token F1) {agreement['overall']:.3f} over {agreement['items']} items; {per}")
    if gold["items"]:
        per = ", ".join(f"{who} {row['mean_score']:.3f} ({row['reviews']})" for who, row in gold["by_reviewer"].items())
        print(f"gold: {gold['items']} items; score vs gold {per or '-'}")
    for row in stats["tags"]:
        used = ", ".join(f"{tag} {n['corrections']} ({n['spans']} spans)" for tag, n in row["tags"].items()
                         if n["corrections"])
        print(f"tags {row['model_name']} {row['model_version']}: {used}")


def run_reassign(args) -> int:
    store = open_store(args)
    for item_id in args.item_ids:
        store.reassign(item_id)
        print(f"item {item_id}: pending")
    return 0


def run_export(args) -> int:
    from tqdm import tqdm

    from annotate.export import export, hub_ignore
    from annotate.publish import check_repo_id, push_folder

    if args.push_to:
        check_repo_id(args.push_to)  # a typo fails now, not after a long export
    store = open_store(args)
    total = store.counts()[args.status]
    with tqdm(total=total, unit="row", desc="export", file=sys.stderr, disable=args.json, delay=0.5) as bar:
        result = export(store, args.out, format=args.format, status=args.status,
                        blur_faces=args.blur_faces, split=args.split, progress=bar.update)
    pushed = None
    if args.push_to:
        pushed = push_folder(result.out_dir, args.push_to, "dataset", private=args.private,
                             ignore=hub_ignore(result.format), message="Export from HumanVLM Studio")
    if args.json:
        print(json.dumps({"out_dir": str(result.out_dir), "format": result.format, "counts": result.counts,
                          "images_written": result.images_written, "faces_blurred": result.faces_blurred,
                          "skipped_without_image": result.skipped_without_image, "pushed_to": pushed}))
    else:
        print(result.summary())
        if result.skipped_without_image:
            print(f"{result.skipped_without_image} items left out: their images were never fetched "
                  "(import with --fetch-images to include them)")
        if pushed:
            print(f"pushed to {pushed}")
    return PARTIAL if result.skipped_without_image else 0


def _item_json(item) -> dict:
    data = asdict(item)
    data["image"]["path"] = str(item.image.path) if item.image.path else None
    return json.loads(json.dumps(data, default=str))  # datetimes as ISO-like strings

"""Command line for the queue database itself: `db copy --from URL --to URL`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    db = subparsers.add_parser("db", help="queue database: copy a whole queue to another database",
                               description="Manage the review queue's database.")
    actions = db.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    copy = actions.add_parser(
        "copy", help="copy every table (items, history, images, audit log, jobs) into an empty database",
        description="Copy a queue, e.g. from SQLite to PostgreSQL or back, with its ids. The target is "
                    "migrated first and must be empty; the copy is one transaction there.")
    copy.add_argument("--from", dest="source", required=True, metavar="URL", help="database to copy from")
    copy.add_argument("--to", dest="target", required=True, metavar="URL", help="empty database to copy into")
    copy.add_argument("--data-dir", type=Path, metavar="DIR", help="data folder of the source (its image files)")
    copy.add_argument("--to-data-dir", type=Path, metavar="DIR",
                      help="copy the image files into this data folder too (default: the images stay where they are)")
    copy.add_argument("--json", action="store_true", help="print the rows copied per table as JSON")
    copy.set_defaults(func=run_copy)


def run_copy(args) -> int:
    from tqdm import tqdm

    from annotate.db import resolve_data_dir
    from annotate.dbcopy import copy_database

    source_dir = resolve_data_dir(args.data_dir) if args.to_data_dir else None
    with tqdm(unit="row", desc="copy", file=sys.stderr, disable=args.json, delay=0.5) as bar:
        result = copy_database(args.source, args.target, source_dir, args.to_data_dir, progress=bar.update)
    print(json.dumps({"counts": result.counts, "image_files": result.image_files}) if args.json else result.summary())
    return 0

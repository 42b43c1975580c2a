"""`backup` and `restore`: the command line over annotate.backup (see its docstring)."""

from __future__ import annotations

import json

from annotate.cli import add_store_arguments


def register(subparsers) -> None:
    backup = subparsers.add_parser(
        "backup", help="snapshot the review queue and its new images into a folder",
        description="Write one consistent snapshot of the review queue (taken while it is in use) into its own "
                    "timestamped subfolder of DIR, with the images added since the previous snapshot and a "
                    "manifest. Prints the snapshot's path.")
    backup.add_argument("--to", required=True, metavar="DIR", dest="backup_dir", help="backup folder")
    backup.add_argument("--json", action="store_true", help="print the manifest as JSON instead of the path")
    add_store_arguments(backup)
    backup.set_defaults(func=run_backup)

    restore = subparsers.add_parser(
        "restore", help="restore the newest snapshot from a backup folder into an empty data folder",
        description="Restore the newest snapshot in DIR (queue and images) into the data folder, upgrading an "
                    "older snapshot's database. Refuses a data folder that already holds a queue unless --force "
                    "(stop the app that serves it first).")
    restore.add_argument("--from", required=True, metavar="DIR", dest="backup_dir", help="backup folder")
    restore.add_argument("--snapshot", metavar="NAME", help="restore this snapshot instead of the newest")
    restore.add_argument("--force", action="store_true", help="replace a queue that is already there")
    restore.add_argument("--json", action="store_true", help="print the result as JSON")
    add_store_arguments(restore)
    restore.set_defaults(func=run_restore)


def _location(args):
    from annotate.db import resolve_data_dir, resolve_url

    data_dir = resolve_data_dir(getattr(args, "data_dir", None))
    return resolve_url(getattr(args, "db", None), data_dir), data_dir


def run_backup(args) -> int:
    from annotate.backup import take_snapshot

    url, data_dir = _location(args)
    snapshot = take_snapshot(url, data_dir, args.backup_dir)
    print(json.dumps(snapshot.manifest) if args.json else snapshot.path)
    return 0


def run_restore(args) -> int:
    from annotate.backup import restore

    url, data_dir = _location(args)
    result = restore(args.backup_dir, url, data_dir, force=args.force, snapshot=args.snapshot)
    if args.json:
        print(json.dumps(result.as_dict()))
        return 0
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result.counts.items()))
    print(f"restored {result.snapshot}: {result.items} items ({counts or 'none'}), "
          f"{result.images_copied} images, into {data_dir}")
    if result.images_missing:
        print(f"warning: {result.images_missing} images the queue refers to are not in the backup")
    return 0

"""`python app.py audit [--json]`: the audit log of privileged actions, newest first."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    from annotate.cli import add_store_arguments

    p = subparsers.add_parser("audit", help="the audit log: who approved, exported, trained, swapped... and when",
                              description="Print the audit log (privileged actions and refused attempts), newest first.")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--limit", type=int, default=100, help="entries to print (default 100)")
    p.add_argument("--actor", default=None, help="only this user's entries")
    add_store_arguments(p)
    p.set_defaults(func=run_audit)


def run_audit(args) -> int:
    from annotate.cli import open_store

    with open_store(args) as store:
        entries = store.audit.entries(limit=max(1, args.limit), actor=args.actor)
    for e in entries:
        if args.json:
            print(json.dumps(e.as_json()))
        else:
            flag = "" if e.allowed else "  REFUSED"
            print(f"{e.at:%Y-%m-%d %H:%M:%S}  {e.actor} ({e.role})  {e.action}  {e.target or ''}"
                  f"{'  ' + e.detail if e.detail else ''}{flag}")
    if not entries and not args.json:
        print("The audit log is empty.")
    return 0

"""`queue disagreements` and `queue adjudicate`: settling overlap items from the command line.

The same Store methods the admin view calls: `disagreements(threshold)` lists decided overlap
items whose independent corrections agree below the threshold (token F1), with every
reviewer's caption; `adjudicate(item_id, by, pick=... | caption=...)` sets the final caption.
"""

from __future__ import annotations

import getpass
import json


def register(actions) -> None:
    from annotate.cli import add_store_arguments

    listing = actions.add_parser("disagreements", help="overlap items whose reviewers disagree, to adjudicate",
                                 description="Decided overlap items whose reviewers agree below --threshold "
                                             "(token F1 between their captions), lowest first.")
    listing.add_argument("--threshold", type=float, default=0.5, help="agreement below this is listed (default 0.5)")
    listing.add_argument("--limit", type=int, default=50, help="at most this many items (default 50)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=run_disagreements)

    settle = actions.add_parser("adjudicate", help="set an overlap item's final caption: pick a reviewer's or merge",
                                description="The final caption of an item reviewed by several reviewers: one "
                                            "reviewer's (--pick) or a merged one (--caption); recorded with who "
                                            "did it.")
    settle.add_argument("item_id", type=int, metavar="ID")
    choice = settle.add_mutually_exclusive_group(required=True)
    choice.add_argument("--pick", metavar="REVIEWER", help="use this reviewer's caption")
    choice.add_argument("--caption", metavar="TEXT", help="use this merged caption")
    settle.add_argument("--by", default=None, metavar="NAME", help="who adjudicates (default: your user name)")
    settle.set_defaults(func=run_adjudicate)
    for parser in (listing, settle):
        add_store_arguments(parser)


def run_disagreements(args) -> int:
    from annotate.cli import open_store

    for found in open_store(args).disagreements(args.threshold, args.limit):
        reviews = [{"reviewer": r.reviewer, "status": r.status, "caption": r.caption} for r in found.reviews]
        if args.json:
            print(json.dumps({"item_id": found.item.id, "agreement": found.agreement, "final": found.item.caption,
                              "final_source": found.item.final_source, "reviews": reviews}, ensure_ascii=False))
            continue
        print(f"item {found.item.id}: agreement {found.agreement:.3f}, final from {found.item.final_source}")
        for review in reviews:
            print(f"  {review['reviewer']} ({review['status']}): {review['caption']}")
    return 0


def run_adjudicate(args) -> int:
    from annotate.cli import open_store

    store = open_store(args)
    store.adjudicate(args.item_id, args.by or getpass.getuser(), pick=args.pick, caption=args.caption)
    item = store.get_item(args.item_id)
    print(f"item {item.id}: {item.status}, final caption from {item.final_source}: {item.caption}")
    return 0

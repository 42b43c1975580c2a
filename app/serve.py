"""`serve` (the default command): load the model, open the store, launch the web UI."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass

from annotate.backup import point_hf_home
from annotate.cli import add_review_arguments, add_store_arguments
from app.policy import env_flag
from annotate.hub_backup import add_backup_arguments, start_from_args
from model.loader import add_model_arguments, config_from_args

log = logging.getLogger(__name__)


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 7860


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve the web UI (the default when no command is given)",
                              description="Serve the HumanVLM Studio web UI.")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", ServeOptions.host),
                   help="address to bind (default 127.0.0.1; $GRADIO_SERVER_NAME, set by Hugging Face Spaces, wins)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", ServeOptions.port)),
                   help="port (default 7860)")
    p.add_argument("--auth", type=parse_auth, default=os.environ.get("HUMANVLM_AUTH"),
                   help="log-in as 'user:password[,user2:password2]' (or $HUMANVLM_AUTH); reviewers are named by their log-in")
    p.add_argument("--mcp", action=argparse.BooleanOptionalAction, default=bool(env_flag("HUMANVLM_MCP")),
                   help="also serve the named API endpoints as MCP tools at /gradio_api/mcp/ (or $HUMANVLM_MCP=1), "
                        "under the same roles")
    p.add_argument("--no-store", action="store_true", help="serve the Caption & Chat tab only, without the review queue and training")
    add_access_arguments(p)
    add_store_arguments(p)
    add_review_arguments(p)
    add_backup_arguments(p)
    add_model_arguments(p)
    p.set_defaults(func=run_serve)


def add_access_arguments(p) -> None:
    """Roles and abuse limits (see app/policy.py and the README's "Hosting in public")."""
    from app.policy import ADMINS_ENV, REVIEWERS_ENV, Limits

    d = Limits()
    g = p.add_argument_group("access and limits")
    g.add_argument("--public", action="store_true",
                   help="public mode even on a loopback address: rights come only from the role lists "
                        "(implied by $SPACE_ID, a non-loopback --host, or --auth)")
    g.add_argument("--admins", default=None, metavar="NAMES",
                   help=f"comma-separated log-in or Hugging Face user names with every right; '*' = every "
                        f"signed-in user (default ${ADMINS_ENV}; on a Space, its owner)")
    g.add_argument("--reviewers", default=None, metavar="NAMES",
                   help=f"names that may review ('*' = every signed-in user; default ${REVIEWERS_ENV}); "
                        "with --auth every logged-in user is a reviewer")
    g.add_argument("--visitors-can-send", action=argparse.BooleanOptionalAction, default=None,
                   help="let anonymous visitors use 'Send to review' (rate-limited; default: on locally, off in public)")
    g.add_argument("--bases", default="", metavar="IDS",
                   help="comma-separated extra training bases admins may pick (besides the serving model and demo)")
    g.add_argument("--max-file-mb", type=int, default=d.max_file_mb, help="largest upload, in MB (HTTP 413 above)")
    g.add_argument("--max-prompt-chars", type=int, default=d.max_prompt_chars, help="longest prompt or chat message")
    g.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help="cap on the tokens one answer may ask for")
    g.add_argument("--max-chat-turns", type=int, default=d.max_chat_turns, help="chat turns kept in the model's context")
    g.add_argument("--max-caption-chars", type=int, default=d.max_caption_chars,
                   help="longest caption accepted on edit and import")
    g.add_argument("--queue-size", type=int, default=d.queue_size,
                   help="requests that may wait for the model; more are told the queue is full")
    g.add_argument("--fetch-private-hosts", action="store_true",
                   help="let the Review tab fetch URL-only photos from private/loopback addresses too "
                        "(an intranet image server you trust; never on a public Space)")
    g.add_argument("--retention-hours", type=float, default=d.retention_hours,
                   help="temporary uploads, downloads and export folders older than this are deleted")


def access_from_args(args):
    from app.policy import Limits, resolve_access

    limits = Limits(max_file_mb=args.max_file_mb, max_prompt_chars=args.max_prompt_chars,
                    max_new_tokens=args.max_new_tokens, max_chat_turns=max(2, args.max_chat_turns),
                    max_caption_chars=args.max_caption_chars, queue_size=args.queue_size,
                    retention_hours=args.retention_hours)
    return resolve_access(host=args.host, public=args.public, auth=bool(args.auth), admins=args.admins,
                          reviewers=args.reviewers, visitors_can_send=args.visitors_can_send,
                          bases=tuple(b.strip() for b in args.bases.split(",") if b.strip()), limits=limits)


def launch(app, access, host: str, port: int | None, auth=None, prevent_thread_lock: bool = False, quiet=False,
           mcp: bool = False):
    """Launch with the limits applied where they belong: the upload route (413), the queue,
    the log-in route (back-off per user name and address)."""
    from starlette.middleware import Middleware

    from app.policy import ClientAddressMiddleware, LoginGuard
    from app.ui import PAGE_CSS

    limits = access.limits
    app.queue(default_concurrency_limit=4, max_size=limits.queue_size)
    app.launch(server_name=host, server_port=port, auth=LoginGuard(auth) if auth else None, show_error=False,
               allowed_paths=[], footer_links=["api"], max_file_size=f"{limits.max_file_mb}mb",
               app_kwargs={"middleware": [Middleware(ClientAddressMiddleware)]}, css=PAGE_CSS,
               prevent_thread_lock=prevent_thread_lock, quiet=quiet, mcp_server=mcp)
    return app


def parse_auth(spec: str | None) -> list[tuple[str, str]] | None:
    if not spec:
        return None
    pairs = []
    for entry in spec.split(","):
        user, sep, password = entry.strip().partition(":")
        if not sep or not user or not password:  # argparse turns this into a usage error, exit 2
            raise argparse.ArgumentTypeError("takes 'user:password' pairs separated by commas")
        pairs.append((user, password))
    return pairs


def _no_network_at_start() -> None:
    """Nothing phones home: no analytics, no version checks."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def run_serve(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter at every start
    _no_network_at_start()
    point_hf_home()  # weights on persistent storage (/data), before huggingface_hub is imported
    from app.ui import Services, build_app
    from model.slot import ModelSlot

    from app.policy import Policy

    auth = args.auth  # parsed by argparse (parse_auth), $HUMANVLM_AUTH included
    access = access_from_args(args)
    print(f"Access: {access.mode} mode" + ("" if access.mode == "local" else
          f"; admins: {', '.join(sorted(access.admins)) or 'none (nobody can train, export or swap)'}"), file=sys.stderr)
    slot = ModelSlot(config_from_args(args))
    vlm = slot.get()  # load before serving: the first visitor should not wait for it
    print(f"Model: {vlm.info.describe()}", file=sys.stderr)
    if vlm.info.is_demo and vlm.info.note:
        print(vlm.info.note, file=sys.stderr)
    start_from_args(args)  # --backup-repo: restores an empty queue first, so before the store opens
    from annotate.fetch import FetchLimits

    services = Services(slot=slot, store=_open_store(args), jobs=_job_runner(args), policy=Policy(access),
                        fetch_limits=FetchLimits(allow_private=args.fetch_private_hosts))
    _start_cleanup(services)
    app = build_app(services)
    try:
        launch(app, access, args.host, args.port, auth, getattr(args, "prevent_thread_lock", False), mcp=args.mcp)
    except OSError as exc:  # typically the port is taken
        raise ServeError(f"cannot serve on {args.host}:{args.port}: {exc}; choose another with --port") from exc
    return 0


def _start_cleanup(services) -> None:
    """Delete old downloads and export folders on a schedule (a daemon thread, hourly)."""
    import threading
    import time

    from annotate.export import exports_dir
    from app.guard import sweep_old_files

    retention = services.policy.config.limits.retention_hours * 3600

    def loop():
        while True:
            services.outbox.sweep()
            if services.store is not None:
                sweep_old_files(exports_dir(services.store.data_dir), retention)
            time.sleep(min(3600, max(60, retention / 4)))

    threading.Thread(target=loop, name="cleanup", daemon=True).start()


class ServeError(RuntimeError):
    user_facing = True


def _open_store(args):
    from annotate.cli import open_store

    return None if args.no_store else open_store(args)


def _job_runner(args):
    from train.jobs import runner_from_args

    return None if args.no_store else runner_from_args(args)  # jobs live in the store's database

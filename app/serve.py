"""`serve` (the default command): load the model, open the store, launch the web UI."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass

from annotate.cli import add_store_arguments
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
    p.add_argument("--no-store", action="store_true", help="serve the Caption & Chat tab only, without the review queue and training")
    add_store_arguments(p)
    add_model_arguments(p)
    p.set_defaults(func=run_serve)


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
    from app.ui import Services, build_app
    from model.slot import ModelSlot

    auth = args.auth  # parsed by argparse (parse_auth), $HUMANVLM_AUTH included
    slot = ModelSlot(config_from_args(args))
    vlm = slot.get()  # load before serving: the first visitor should not wait for it
    print(f"Model: {vlm.info.describe()}", file=sys.stderr)
    if vlm.info.is_demo and vlm.info.note:
        print(vlm.info.note, file=sys.stderr)
    services = Services(slot=slot, store=_open_store(args), jobs=_job_runner(args), auth_enabled=bool(auth))
    app = build_app(services)
    app.queue(default_concurrency_limit=4)
    try:
        app.launch(server_name=args.host, server_port=args.port, auth=auth, show_error=False,
                   allowed_paths=[], footer_links=["api"],
                   prevent_thread_lock=getattr(args, "prevent_thread_lock", False))
    except OSError as exc:  # typically the port is taken
        raise ServeError(f"cannot serve on {args.host}:{args.port}: {exc}; choose another with --port") from exc
    return 0


class ServeError(RuntimeError):
    user_facing = True


def _open_store(args):
    from annotate.cli import open_store

    return None if args.no_store else open_store(args)


def _job_runner(args):
    from train.jobs import runner_from_args

    return None if args.no_store else runner_from_args(args)  # jobs live in the store's database

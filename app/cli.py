"""The command line: one parser, subcommands registered by each part of the product.

Each package owns its subcommands in its own `cli.py` with a `register(subparsers)` that
adds parsers and sets `func`; this module only assembles them and turns the product's
named errors into one clean line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute subcommands, in the order `--help` lists them.
SUBCOMMAND_MODULES = (
    "app.serve",
    "model.cli",
    "annotate.cli",
    "annotate.labelstudio_cli",
    "annotate.audit_cli",
    "annotate.backup_cli",
    "annotate.db_cli",
    "train.cli",
)


class CliError(Exception):
    """A failure the user can fix; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="HumanVLM Studio: caption photos of people, review captions, fine-tune.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["serve", *argv]  # no subcommand: serve the web UI (Hugging Face Spaces)
    args = parser.parse_args(argv)
    _quiet_libraries()
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # named product errors become one line; others keep their traceback
        if _is_user_error(exc):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


def _is_user_error(exc: Exception) -> bool:
    """Product errors subclass `UserError` in their package; they carry a user-facing message."""
    return isinstance(exc, CliError) or getattr(exc, "user_facing", False)


def _quiet_libraries() -> None:
    """Library progress bars (weight loading, shard writing) would drown the CLI's own output."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

"""Gradio glue around the policy: ask it, audit what it allowed, show what it refused.

Every handler in app/ starts with `ask(services, action, request, profile)`. Also here: safe
handling of files that cross the HTTP boundary and escaping of user text shown in Markdown.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr

from app.policy import Identity, Refused

log = logging.getLogger("humanvlm.access")


def ask(services, action: str, request=None, profile=None, target=None) -> Identity:
    """The caller's identity, when the policy lets them take `action`; else a clear gr.Error.

    A refusal changes nothing; it is logged as one line and, for signed-in callers, written to
    the audit log (anonymous refusals are not, so strangers cannot fill the database).
    """
    identity = services.policy.identify(request, profile)
    try:
        return services.policy.require(identity, action)
    except Refused as exc:
        log.warning("refused %s for %s: %s", action, identity.who, exc)
        if identity.name and services.store is not None:
            services.store.audit.record(identity.who, str(identity.role), action, target, str(exc), allowed=False)
        raise gr.Error(_sentence(str(exc)), title="Not allowed", print_exception=False) from None


def audit(services, identity: Identity, action: str, target=None, detail=None) -> None:
    """Record an allowed privileged action (who, what, when, on what)."""
    if services.store is not None:
        services.store.audit.record(identity.who, str(identity.role), action,
                                    None if target is None else str(target), detail)


class Mistake(Exception):
    """A user mistake (a box left empty, nothing claimed): a warning, not a red error."""


def warn_on_mistake(n_outputs: int):
    """Decorator: a `Mistake` becomes a toast warning and leaves every output as it was."""
    import functools

    def wrap(fn):
        @functools.wraps(fn)
        def handler(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Mistake as exc:
                log.info("user mistake: %s", exc)
                gr.Warning(str(exc))
                if n_outputs == 0:
                    return None
                return tuple(gr.skip() for _ in range(n_outputs)) if n_outputs > 1 else gr.skip()
        return handler
    return wrap


def user_error(exc: Exception) -> Exception:
    """A product error the user can act on becomes a gr.Error with its message; others re-raise."""
    if getattr(exc, "user_facing", False):
        return gr.Error(_sentence(str(exc)), print_exception=False)  # a user mistake: no traceback
    return exc


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


# ---- Markdown ------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def md(text) -> str:
    """User-supplied text made inert inside Markdown: no code spans, links, HTML or emphasis."""
    text = str(text if text is not None else "")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", " ")


# ---- files across the HTTP boundary --------------------------------------------------------


def uploaded_path(file) -> str:
    """The path of a file the caller uploaded through Gradio's upload route.

    API functions receive file arguments unprocessed ({"path": ...}); a hostile caller could
    name any server path there. Only files inside Gradio's upload folder are accepted.
    """
    from gradio.utils import get_upload_folder

    path = file.get("path") if isinstance(file, dict) else getattr(file, "path", None)
    if not path:
        raise gr.Error("Upload a photo (e.g. gradio_client.handle_file('photo.jpg')).")
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(Path(get_upload_folder()).resolve()) or not resolved.is_file():
        raise gr.Error("The photo must be uploaded with the request (gradio_client.handle_file), "
                       "not named by a server path.")
    return str(resolved)


class Outbox:
    """A private temporary folder for files offered for download (photos, export zips).

    Files the app keeps (the queue's images, exports) live in the data folder, which Gradio
    must never serve by path; a copy goes here and Gradio serves the copy from its cache.
    Copies older than `retention_s` are deleted on a schedule.
    """

    def __init__(self, retention_s: float = 24 * 3600):
        self.root = Path(tempfile.mkdtemp(prefix="humanvlm-outbox-"))
        self.retention_s = retention_s
        self._lock = threading.Lock()

    def copy(self, source: Path | str, name: str | None = None) -> str:
        folder = Path(tempfile.mkdtemp(dir=self.root))
        target = folder / (name or Path(source).name)
        shutil.copyfile(source, target)
        return str(target)

    def sweep_quietly(self) -> None:
        self.sweep()

    def folder(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.root))

    def sweep(self, now: float | None = None) -> int:
        """Delete what is older than the retention; returns how many entries went."""
        with self._lock:
            return sweep_old_files(self.root, self.retention_s, now)


def sweep_old_files(folder: Path, retention_s: float, now: float | None = None) -> int:
    """Delete top-level entries of `folder` older than the retention (export folders, zips)."""
    if not folder.is_dir():
        return 0
    now = time.time() if now is None else now
    removed = 0
    for entry in folder.iterdir():
        if now - entry.stat().st_mtime > retention_s:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed += 1
    return removed


"""The Review and Export tabs: reviewers correct model captions; approved data is exported.

Captions are only ever shown in text components (Textbox, HighlightedText, Dataframe cells),
never as HTML, so a caption such as `<img src=x onerror=...>` stays inert text.
"""


import difflib
import shutil
import time
from pathlib import Path

import gradio as gr

from annotate.records import FIELDS

# Alt+key shortcuts (plain letters would fire while typing a caption).
SHORTCUTS = {"claim-btn": "n", "approve-btn": "a", "reject-btn": "r", "skip-btn": "s", "undo-btn": "z"}
# Runs once in the browser when the page loads (see app/ui.py).
SHORTCUT_JS = """
() => {
  const ids = %s;
  document.addEventListener('keydown', (e) => {
    if (!e.altKey || e.ctrlKey || e.metaKey) return;
    const id = ids[e.code.replace('Key', '').toLowerCase()];
    const button = id && document.getElementById(id);
    if (button) { e.preventDefault(); button.click(); }
  });
}
""" % ({v: k for k, v in SHORTCUTS.items()},)
EMPTY = {"item_id": None, "version": None}


def _label(text: str, button_id: str) -> str:
    return f"{text} (Alt+{SHORTCUTS[button_id].upper()})"


def word_diff(draft: str, final: str) -> list[tuple[str, str | None]]:
    """Word-level diff of the model draft vs the correction, as (text, '-'|'+'|None) runs."""
    a, b = (draft or "").split(), (final or "").split()
    out: list[tuple[str, str | None]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append((" ".join(a[i1:i2]) + " ", None))
            continue
        if i2 > i1:
            out.append((" ".join(a[i1:i2]) + " ", "-"))
        if j2 > j1:
            out.append((" ".join(b[j1:j2]) + " ", "+"))
    return out


def _reviewer(name: str | None, request: gr.Request | None, auth_enabled: bool) -> str:
    if auth_enabled and request is not None and getattr(request, "username", None):
        return request.username
    name = (name or "").strip()
    if not name:
        raise gr.Error("Type your name in the 'Reviewer' box first: every correction is signed.")
    return name


def _user_error(exc: Exception):
    if getattr(exc, "user_facing", False):
        return gr.Error(str(exc))
    return exc


def _counts_md(store, reviewer: str | None) -> str:
    counts = store.counts()
    line = " · ".join(f"{k.replace('_', ' ')}: **{v}**" for k, v in counts.items())
    if reviewer:
        mine = store.reviewer_counts(reviewer)
        line += "  \n**You** (" + reviewer + "): " + " · ".join(f"{k.replace('_', ' ')} {_num(v)}" for k, v in mine.items())
    return line


def _num(value) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _view(store, item, reviewer: str | None, note: str = "") -> tuple:
    """Everything the tab shows for one item (or for an empty queue when item is None)."""
    if item is None:
        blank = ("", "", *[""] * len(FIELDS), [], [])  # draft, caption, fields, diff, history
        return (None, "", *blank, (f"{note} · " if note else "") + "Nothing left to review. 🎉", _counts_md(store, reviewer), dict(EMPTY))
    image_path = str(item.image.path) if item.image.path and Path(item.image.path).exists() else None
    source = "" if image_path else f"Image not stored locally; source URL: `{item.image.url}`"
    history = [[r.created_at.strftime("%Y-%m-%d %H:%M:%S"), r.reviewer, r.kind, r.caption] for r in item.history]
    status = (f"Item **{item.id}** · status **{item.status}** · model `{item.draft.model_version}`"
              + (f" · {note}" if note else ""))
    fields = [item.fields.get(f, "") for f in FIELDS]
    return (image_path, source, item.draft.caption, item.caption, *fields,
            word_diff(item.draft.caption, item.caption), history, status,
            _counts_md(store, reviewer), {"item_id": item.id, "version": item.version})


def claim_next(store, auth_enabled, name, request: gr.Request):
    reviewer = _reviewer(name, request, auth_enabled)
    try:
        return _view(store, store.claim_next(reviewer), reviewer)
    except Exception as exc:
        raise _user_error(exc) from None


def _save_if_changed(store, state, reviewer, caption, fields: dict) -> int:
    """Save the reviewer's edit (if any) with optimistic locking; returns the current version."""
    item = store.get_item(state["item_id"])
    changed = caption.strip() != item.caption.strip() or any(
        (fields.get(f) or "") != (item.fields.get(f) or "") for f in FIELDS)
    if not changed:
        return state["version"]
    return store.submit_correction(item.id, reviewer, caption, expected_version=state["version"],
                                   fields={k: v for k, v in fields.items() if v and v.strip()})


def decide(store, auth_enabled, action, state, name, caption, face, body, act, background, reason,
           request: gr.Request):
    """Approve (saving the edit first), reject with a reason, or skip; then claim the next item."""
    reviewer = _reviewer(name, request, auth_enabled)
    if not state or state.get("item_id") is None:
        raise gr.Error("Claim an item first.")
    item_id = state["item_id"]
    try:
        if action == "approve":
            fields = dict(zip(FIELDS, (face, body, act, background)))
            version = _save_if_changed(store, state, reviewer, caption, fields)
            store.approve(item_id, reviewer, expected_version=version)
        elif action == "reject":
            if not (reason or "").strip():
                raise gr.Error("Give a reason to reject (e.g. 'not a photo of a person').")
            store.reject(item_id, reviewer, reason.strip(), expected_version=state["version"])
        else:
            store.skip(item_id, reviewer, expected_version=state["version"])
        return _view(store, store.claim_next(reviewer), reviewer, note=f"item {item_id} {action_past(action)}")
    except gr.Error:
        raise
    except Exception as exc:
        if getattr(exc, "user_facing", False):
            gr.Warning(str(exc))
            return _keep_typed(_view(store, store.get_item(item_id), reviewer, note="reloaded: see the warning"),
                               caption, [face, body, act, background])
        raise


def _keep_typed(view: tuple, caption: str, fields: list[str]) -> tuple:
    """The reloaded item, with what the reviewer typed still in the boxes: nothing is lost."""
    view = list(view)
    view[3], view[4:4 + len(FIELDS)] = caption, fields  # caption box, structured fields
    view[4 + len(FIELDS)] = word_diff(view[2], caption)  # diff against the draft
    return tuple(view)


def action_past(action: str) -> str:
    return {"approve": "approved", "reject": "rejected", "skip": "skipped"}[action]


def undo(store, auth_enabled, state, name, request: gr.Request):
    """Undo the reviewer's last decision; the item claimed after it goes back to the queue,
    so the reviewer holds one claim, the item brought back."""
    reviewer = _reviewer(name, request, auth_enabled)
    try:
        item = store.undo_last(reviewer)
    except Exception as exc:
        raise _user_error(exc) from None
    shown = (state or {}).get("item_id")
    if shown is not None and shown != item.id:
        current = store.get_item(shown)
        if current.status == "in_review" and current.claimed_by == reviewer:
            store.release(shown, reviewer)
    return _view(store, item, reviewer, note="last action undone")


def return_skipped(store, auth_enabled, name, request: gr.Request):
    """Put every skipped item back in the queue (skipping parks an item until then)."""
    reviewer = _reviewer(name, request, auth_enabled)
    skipped = [item.id for item in _all_items(store, "skipped")]
    for item_id in skipped:
        store.reassign(item_id)
    gr.Info(f"{len(skipped)} skipped item{'' if len(skipped) == 1 else 's'} back in the queue.")
    return _counts_md(store, reviewer)


def _all_items(store, status: str, page: int = 500):
    after = 0
    while batch := store.list_items(status=status, limit=page, after_id=after):
        yield from batch
        after = batch[-1].id


def live_diff(draft: str, caption: str):
    return word_diff(draft, caption)


def run_export(store, fmt, status, blur, split, progress=gr.Progress()):
    """Export into the data folder and offer the result (parquet/JSON, plus a zip) for download."""
    from annotate.export import export

    total = store.counts().get(status, 0)
    if total == 0:
        raise gr.Error(f"No {status} items to export yet.")
    out = store.data_dir / "exports" / f"{time.strftime('%Y%m%d-%H%M%S')}-{fmt}"
    done = 0
    progress(0, desc="exporting")

    def step(rows: int) -> None:
        nonlocal done
        done += rows
        progress(min(done / total, 1.0), desc=f"{done}/{total} rows")

    try:
        result = export(store, out, format=fmt, status=status, blur_faces=bool(blur), split=float(split), progress=step)
    except Exception as exc:
        raise _user_error(exc) from None
    archive = shutil.make_archive(str(out), "zip", root_dir=out)
    files = [archive, *sorted(str(p) for p in out.iterdir() if p.suffix in (".parquet", ".json"))]
    return result.summary(), files


def build_review_tab(services) -> str:
    """Lay out the Review and Export tabs; returns JavaScript to run on page load (shortcuts)."""
    store, auth = services.store, services.auth_enabled
    with gr.Tab("Review", id="review") as review_tab:
        # Inside the tab: a component directly under gr.Tabs() breaks the tab buttons.
        state = gr.State(dict(EMPTY))
        with gr.Row():
            name = gr.Textbox(label="Reviewer", placeholder="your name", scale=1, visible=not auth, elem_id="reviewer")
            counts = gr.Markdown(elem_id="queue-counts")
        with gr.Row():
            claim_btn = gr.Button(_label("Claim next", "claim-btn"), variant="primary", elem_id="claim-btn", scale=3)
            unskip_btn = gr.Button("Return skipped items to the queue", elem_id="unskip-btn", scale=1)
        status = gr.Markdown(elem_id="item-status")
        with gr.Row():
            with gr.Column(scale=5):
                photo = gr.Image(label="Photo", type="filepath", interactive=False, height=560, elem_id="review-photo")
                source = gr.Markdown()
            with gr.Column(scale=6):
                with gr.Row():
                    draft = gr.Textbox(label="Model draft", lines=8, interactive=False, elem_id="draft")
                    caption = gr.Textbox(label="Your caption", lines=8, interactive=True, elem_id="caption-edit")
                diff = gr.HighlightedText(label="Draft → your caption (word diff)", combine_adjacent=True,
                                          color_map={"-": "red", "+": "green"}, elem_id="diff")
                with gr.Accordion("Structured fields (optional)", open=False):
                    face = gr.Textbox(label="Face", lines=2)
                    body = gr.Textbox(label="Body & clothing", lines=2)
                    act = gr.Textbox(label="Action", lines=2)
                    background = gr.Textbox(label="Background", lines=2)
                reason = gr.Textbox(label="Reason (to reject)", placeholder="e.g. not a photo of a person")
                with gr.Row():
                    approve_btn = gr.Button(_label("Approve", "approve-btn"), variant="primary", elem_id="approve-btn")
                    reject_btn = gr.Button(_label("Reject", "reject-btn"), variant="stop", elem_id="reject-btn")
                    skip_btn = gr.Button(_label("Skip", "skip-btn"), elem_id="skip-btn")
                    undo_btn = gr.Button(_label("Undo", "undo-btn"), elem_id="undo-btn")
        history = gr.Dataframe(headers=["time", "reviewer", "kind", "caption"], label="Revision history",
                               interactive=False, wrap=True, elem_id="history")
    view = [photo, source, draft, caption, face, body, act, background, diff, history, status, counts, state]
    inputs = [state, name, caption, face, body, act, background, reason]
    # Closures, not functools.partial: Gradio finds the gr.Request parameter by type hint.
    def on_claim(name: str, request: gr.Request):
        return claim_next(store, auth, name, request)

    def on_decide(action: str):
        def handler(state: dict, name: str, caption: str, face: str, body: str, act: str, background: str,
                    reason: str, request: gr.Request):
            return decide(store, auth, action, state, name, caption, face, body, act, background, reason, request)
        return handler

    def on_undo(state: dict, name: str, request: gr.Request):
        return undo(store, auth, state, name, request)

    def on_open(name: str, request: gr.Request):  # the queue's counts before the first claim
        signed = request.username if auth and getattr(request, "username", None) else (name or "").strip()
        return _counts_md(store, signed or None)

    def on_return_skipped(name: str, request: gr.Request):
        return return_skipped(store, auth, name, request)

    review_tab.select(on_open, [name], [counts], api_name=False)
    unskip_btn.click(on_return_skipped, [name], [counts], api_name="return_skipped")
    claim_btn.click(on_claim, [name], view, api_name="claim_next")
    for button, action in ((approve_btn, "approve"), (reject_btn, "reject"), (skip_btn, "skip")):
        button.click(on_decide(action), inputs, view, api_name=action)
    undo_btn.click(on_undo, [state, name], view, api_name="undo")
    caption.change(live_diff, [draft, caption], [diff], api_name=False, show_progress="hidden", trigger_mode="always_last")
    _build_export_tab(store)
    return SHORTCUT_JS


def _build_export_tab(store) -> None:
    with gr.Tab("Export", id="export"):
        gr.Markdown("Approved captions in the HumanCaption-HQ format (parquet) or LLaVA instruction JSON, "
                    "with a deterministic train/held-out split by image hash. Images never carry EXIF/GPS.")
        with gr.Row():
            fmt = gr.Radio(["humancaptionhq", "llava"], value="humancaptionhq", label="Format")
            status = gr.Dropdown(["approved", "rejected", "skipped", "pending", "in_review"], value="approved", label="Status")
            split = gr.Slider(0.5, 1.0, value=0.9, step=0.05, label="Train share")
            blur = gr.Checkbox(label="Blur faces in exported images")
        export_btn = gr.Button("Export", variant="primary", elem_id="export-btn")
        summary = gr.Textbox(label="Result", interactive=False)
        files = gr.File(label="Download", file_count="multiple", interactive=False)
    def on_export(fmt: str, status: str, blur: bool, split: float, progress=gr.Progress()):
        return run_export(store, fmt, status, blur, split, progress)

    export_btn.click(on_export, [fmt, status, blur, split], [summary, files], api_name="export")

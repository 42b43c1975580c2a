"""The Review and Export tabs: reviewers correct model captions; approved data is exported.

Captions are only ever shown in text components (Textbox, HighlightedText, Dataframe cells),
never as HTML, so a caption such as `<img src=x onerror=...>` stays inert text.
"""


import difflib
from dataclasses import replace
import shutil
import time
from pathlib import Path

import gradio as gr

from annotate.records import FIELDS, TAGS
from app.guard import Mistake, ask, audit, md, user_error, warn_on_mistake
from app.policy import Identity

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


def _reviewer(services, name: str | None, request, profile=None, action: str = "review") -> Identity:
    """Who signs this review: the signed-in identity; on a laptop (local mode), the name typed."""
    identity = ask(services, action, request, profile)
    if not services.local:
        return identity
    name = (name or "").strip()
    if not name:
        raise Mistake("Type your name in the 'Reviewer' box first: every correction is signed.")
    return replace(identity, name=name)


def _counts_md(store, reviewer: str | None, agreement: bool = False) -> str:
    """The queue's counts and the reviewer's own; `agreement` adds their agreement with the
    other reviewers (computed over every independent review: only when the tab opens)."""
    counts = store.counts()
    line = " · ".join(f"{k.replace('_', ' ')}: **{v}**" for k, v in counts.items())
    if reviewer:
        mine = store.reviewer_counts(reviewer)
        line += "  \n**You** (" + md(reviewer) + "): " + " · ".join(f"{k.replace('_', ' ')} {_num(v)}" for k, v in mine.items())
        figure = store.reviewer_agreement(reviewer)["agreement"] if agreement else None
        if figure is not None:  # items reviewed independently by several reviewers
            line += f" · agreement with the others {_num(figure)}"
    return line


def _num(value) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _view(services, item, reviewer: str | None, note: str = "", fetch_note: str = "") -> tuple:
    """Everything the tab shows for one item (or for an empty queue when item is None)."""
    store = services.store
    if item is None:
        blank = ("", "", *[""] * len(FIELDS), [], [])  # draft, caption, fields, diff, history
        return (None, "", *blank, (f"{note} · " if note else "") + "Nothing left to review. 🎉", _counts_md(store, reviewer),
                dict(EMPTY), [])
    image_path = services.outbox.copy(item.image.path) if item.image.path and Path(item.image.path).exists() else None
    source = "" if image_path else (f"⚠️ No photo to show; source URL: {md(item.image.url)}"
                                    + (f"  \n{md(fetch_note)}" if fetch_note else ""))
    history = [[r.created_at.strftime("%Y-%m-%d %H:%M:%S"), r.reviewer, r.kind, r.caption] for r in item.history]
    status = (f"Item **{item.id}** · status **{item.status}** · model {md(item.draft.model_version)}"
              + (f" · {note}" if note else ""))
    fields = [item.fields.get(f, "") for f in FIELDS]
    return (image_path, source, item.draft.caption, item.caption, *fields,
            word_diff(item.draft.caption, item.caption), history, status,
            _counts_md(store, reviewer), {"item_id": item.id, "version": item.version}, comment_rows(store, item.id))


def comment_rows(store, item_id: int) -> list[list]:
    return [[c.created_at.strftime("%Y-%m-%d %H:%M"), c.author, c.text] for c in store.notes.comments(item_id)]


def guidelines_md(store) -> str:
    text, by, at = store.notes.guidelines()
    if not text:
        return "*No annotation guidelines yet (an admin sets them below).*"
    return text + f"\n\n<small>Set by {md(by)} on {at:%Y-%m-%d %H:%M} UTC</small>"


def claim_next(services, name, request, profile=None):
    reviewer = _reviewer(services, name, request, profile).name
    try:
        item, fetch_note = _claim_with_photo(services, reviewer)
        return _view(services, item, reviewer, fetch_note=fetch_note)
    except Exception as exc:
        raise user_error(exc) from None


def _claim_with_photo(services, reviewer: str):
    """(item, note): the next item, its photo fetched when it is known only by URL."""
    from annotate.fetch import photo_for_review

    return photo_for_review(services.store, services.store.claim_next(reviewer), services.fetch_limits)


NO_PHOTO = ("Nobody can see this item's photo (it is known only by its URL and could not be fetched): "
            "approving it would approve a caption blind. Reject or skip it.")


def _save_if_changed(store, state, reviewer, caption, fields: dict, tags=None) -> int:
    """Save the reviewer's edit (if any) with optimistic locking; returns the current version."""
    item = store.get_item(state["item_id"], reviewer=reviewer)  # overlap items: this reviewer's own review
    changed = caption.strip() != item.caption.strip() or any(
        (fields.get(f) or "") != (item.fields.get(f) or "") for f in FIELDS)
    if not changed:
        return state["version"]
    return store.submit_correction(item.id, reviewer, caption, expected_version=state["version"],
                                   fields={k: v for k, v in fields.items() if v and v.strip()}, tags=tags or None)


def decide(services, action, state, name, caption, face, body, act, background, reason, request, profile=None,
           tags=None):
    """Approve (saving the edit first), reject with a reason, or skip; then claim the next item."""
    store = services.store
    identity = _reviewer(services, name, request, profile)
    reviewer = identity.name
    if not state or state.get("item_id") is None:
        raise Mistake("Claim an item first.")
    item_id = state["item_id"]
    try:
        if action == "approve":
            if store.get_item(item_id).image.path is None:
                raise Mistake(NO_PHOTO)
            fields = dict(zip(FIELDS, (face, body, act, background)))
            for text in (caption, *fields.values()):
                services.policy.check_caption(text)
            tags = [t for t in (tags or []) if t in TAGS]
            version = _save_if_changed(store, state, reviewer, caption, fields, tags)
            store.approve(item_id, reviewer, expected_version=version, tags=tags or None)
        elif action == "reject":
            if not (reason or "").strip():
                raise Mistake("Give a reason to reject (e.g. 'not a photo of a person').")
            store.reject(item_id, reviewer, services.policy.check_text(reason.strip(), "reason"),
                         expected_version=state["version"])
        else:
            store.skip(item_id, reviewer, expected_version=state["version"])
        if action != "skip":
            audit(services, identity, action, f"item {item_id}", reason.strip() if action == "reject" else None)
        nxt, fetch_note = _claim_with_photo(services, reviewer)
        return _view(services, nxt, reviewer, note=f"item {item_id} {action_past(action)}", fetch_note=fetch_note)
    except (gr.Error, Mistake):
        raise
    except Exception as exc:
        if getattr(exc, "user_facing", False):
            gr.Warning(str(exc))
            return _keep_typed(_view(services, store.get_item(item_id, reviewer=reviewer), reviewer,
                                     note="reloaded: see the warning"),
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


def undo(services, state, name, request, profile=None):
    """Undo the reviewer's last decision; the item claimed after it goes back to the queue,
    so the reviewer holds one claim, the item brought back."""
    store = services.store
    reviewer = _reviewer(services, name, request, profile).name
    try:
        item = store.undo_last(reviewer)
    except Exception as exc:
        raise user_error(exc) from None
    shown = (state or {}).get("item_id")
    if shown is not None and shown != item.id:
        current = store.get_item(shown, reviewer=reviewer)
        if current.status == "in_review" and current.claimed_by == reviewer:
            store.release(shown, reviewer, undoable=False)  # the next Undo walks further back
    return _view(services, item, reviewer, note=f"undone: your last action on item {item.id}")


def return_skipped(services, name, request, profile=None):
    """Put every skipped item back in the queue (skipping parks an item until then): an admin's call."""
    identity = ask(services, "reassign", request, profile)
    store = services.store
    skipped = [item.id for item in _all_items(store, "skipped")]
    for item_id in skipped:
        store.reassign(item_id)
    audit(services, identity, "reassign", f"{len(skipped)} skipped items", "returned to the queue")
    gr.Info(f"{len(skipped)} skipped item{'' if len(skipped) == 1 else 's'} back in the queue.")
    return _counts_md(store, identity.name if not services.local else ((name or "").strip() or None))


def _all_items(store, status: str, page: int = 500):
    after = 0
    while batch := store.list_items(status=status, limit=page, after_id=after):
        yield from batch
        after = batch[-1].id


def live_diff(draft: str, caption: str):
    return word_diff(draft, caption)


EXPORT_FORMATS = ("humancaptionhq", "llava")
EXPORT_STATUSES = ("approved", "rejected", "skipped", "pending", "in_review")


def run_export(services, identity, fmt, status, blur=False, split=0.9, progress=None):
    """Export into the data folder; returns (summary, zip path in the outbox, single files)."""
    from annotate.export import export, exports_dir

    if fmt not in EXPORT_FORMATS or status not in EXPORT_STATUSES:
        raise gr.Error(f"Format is one of {', '.join(EXPORT_FORMATS)}; status one of {', '.join(EXPORT_STATUSES)}.")
    if not 0.5 <= float(split) <= 1.0:
        raise gr.Error("The train share is between 0.5 and 1.0.")
    store = services.store
    total = store.counts().get(status, 0)
    if total == 0:
        raise gr.Error(f"No {status} items to export yet.")
    out = exports_dir(store.data_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{fmt}"
    done = 0
    if progress is not None:
        progress(0, desc="exporting")

    def step(rows: int) -> None:
        nonlocal done
        done += rows
        if progress is not None:
            progress(min(done / total, 1.0), desc=f"{done}/{total} rows")

    try:
        result = export(store, out, format=fmt, status=status, blur_faces=bool(blur), split=float(split), progress=step)
    except Exception as exc:
        raise user_error(exc) from None
    archive = shutil.make_archive(str(services.outbox.folder() / out.name), "zip", root_dir=out)
    files = [services.outbox.copy(p) for p in sorted(out.iterdir()) if p.suffix in (".parquet", ".json")]
    audit(services, identity, "export", out.name, f"{fmt}, {status}, {result.summary()}")
    return result.summary(), archive, files


def build_review_tab(services) -> tuple[str, dict]:
    """Lay out the Review and Export tabs; returns JavaScript to run on page load (shortcuts)
    and the tabs by name (the page shows each to the roles that may use it)."""
    store, local = services.store, services.local
    with gr.Tab("Review", id="review") as review_tab:
        # Inside the tab: a component directly under gr.Tabs() breaks the tab buttons.
        state = gr.State(dict(EMPTY))
        with gr.Row():
            name = gr.Textbox(label="Reviewer", placeholder="your name", scale=1, visible=local, elem_id="reviewer",
                              max_length=200)
            counts = gr.Markdown(elem_id="queue-counts")
        with gr.Row():
            claim_btn = gr.Button(_label("Claim next", "claim-btn"), variant="primary", elem_id="claim-btn", scale=3)
            unskip_btn = gr.Button("Return skipped items to the queue", elem_id="unskip-btn", scale=1)
        with gr.Accordion("Annotation guidelines", open=False):
            guidelines = gr.Markdown(elem_id="guidelines", sanitize_html=True)
            with gr.Group(visible=False) as guidelines_editor:  # admins only (and refused to others)
                guidelines_text = gr.Textbox(label="Edit the guidelines (Markdown)", lines=6,
                                             elem_id="guidelines-edit", max_length=20_000)
                guidelines_btn = gr.Button("Save guidelines", size="sm", elem_id="guidelines-save")
        status = gr.Markdown(elem_id="item-status")
        with gr.Row():
            with gr.Column(scale=5):
                photo = gr.Image(label="Photo", type="filepath", interactive=False, height=560, elem_id="review-photo")
                source = gr.Markdown()
            with gr.Column(scale=6):
                with gr.Row():
                    draft = gr.Textbox(label="Model draft", lines=8, interactive=False, elem_id="draft")
                    caption = gr.Textbox(label="Your caption", lines=8, interactive=True, elem_id="caption-edit",
                                         max_length=services.policy.config.limits.max_caption_chars)
                diff = gr.HighlightedText(label="Draft → your caption (word diff)", combine_adjacent=True,
                                          color_map={"-": "red", "+": "green"}, elem_id="diff")
                with gr.Accordion("Structured fields (optional)", open=False):
                    face = gr.Textbox(label="Face", lines=2)
                    body = gr.Textbox(label="Body & clothing", lines=2)
                    act = gr.Textbox(label="Action", lines=2)
                    background = gr.Textbox(label="Background", lines=2)
                tags = gr.CheckboxGroup([(t.replace("_", " "), t) for t in TAGS], label="What did you fix?",
                                        elem_id="fix-tags")
                reason = gr.Textbox(label="Reason (to reject)", placeholder="e.g. not a photo of a person")
                with gr.Row():
                    approve_btn = gr.Button(_label("Approve", "approve-btn"), variant="primary", elem_id="approve-btn")
                    reject_btn = gr.Button(_label("Reject", "reject-btn"), variant="stop", elem_id="reject-btn")
                    skip_btn = gr.Button(_label("Skip", "skip-btn"), elem_id="skip-btn")
                    undo_btn = gr.Button(_label("Undo", "undo-btn"), elem_id="undo-btn")
        history = gr.Dataframe(headers=["time", "reviewer", "kind", "caption"], label="Revision history",
                               interactive=False, wrap=True, elem_id="history")
        with gr.Row():
            comments = gr.Dataframe(headers=["time (UTC)", "who", "comment"], label="Comments", interactive=False,
                                    wrap=True, elem_id="comments", scale=3)
            with gr.Column(scale=2):
                comment = gr.Textbox(label="Comment on this item", lines=2, elem_id="comment-in", max_length=2_000)
                comment_btn = gr.Button("Add comment", size="sm", elem_id="comment-add")
    view = [photo, source, draft, caption, face, body, act, background, diff, history, status, counts, state,
            comments]
    inputs = [state, name, caption, face, body, act, background, reason, tags]

    # Closures, not functools.partial: Gradio finds gr.Request / gr.OAuthProfile by type hint.
    @warn_on_mistake(len(view))
    def on_claim(name: str, request: gr.Request, profile: gr.OAuthProfile | None):
        return claim_next(services, name, request, profile)

    def on_decide(action: str):
        @warn_on_mistake(len(view))
        def handler(state: dict, name: str, caption: str, face: str, body: str, act: str, background: str,
                    reason: str, tags: list, request: gr.Request, profile: gr.OAuthProfile | None):
            return decide(services, action, state, name, caption, face, body, act, background, reason,
                          request, profile, tags)
        return handler

    @warn_on_mistake(len(view))
    def on_undo(state: dict, name: str, request: gr.Request, profile: gr.OAuthProfile | None):
        return undo(services, state, name, request, profile)

    def on_open(name: str, request: gr.Request, profile: gr.OAuthProfile | None):  # counts before the first claim
        identity = services.policy.identify(request, profile)
        if not services.policy.allows(identity, "review"):
            return "", "", gr.Group(visible=False), gr.skip()
        signed = (name or "").strip() if local else identity.name
        admin = services.policy.allows(identity, "settings")
        return (_counts_md(store, signed or None, agreement=True), guidelines_md(store), gr.Group(visible=admin),
                store.notes.guidelines()[0] if admin else gr.skip())

    @warn_on_mistake(2)
    def on_save_guidelines(text: str, request: gr.Request, profile: gr.OAuthProfile | None):
        identity = ask(services, "settings", request, profile, target="guidelines")
        try:
            store.notes.set_guidelines(text, identity.name)
        except Exception as exc:
            raise user_error(exc) from None
        audit(services, identity, "settings", "guidelines", f"{len(text or '')} characters")
        gr.Info("Guidelines saved: reviewers see them beside every item.")
        return guidelines_md(store), text

    @warn_on_mistake(2)
    def on_comment(state: dict, name: str, text: str, request: gr.Request, profile: gr.OAuthProfile | None):
        author = _reviewer(services, name, request, profile).name
        if not state or state.get("item_id") is None:
            raise Mistake("Claim an item first, then comment on it.")
        try:
            store.notes.add_comment(state["item_id"], author, services.policy.check_text(text, "comment"))
        except Exception as exc:
            if getattr(exc, "user_facing", False):
                raise Mistake(str(exc)[:1].upper() + str(exc)[1:]) from None
            raise
        return comment_rows(store, state["item_id"]), ""

    @warn_on_mistake(1)
    def on_return_skipped(name: str, request: gr.Request, profile: gr.OAuthProfile | None):
        return return_skipped(services, name, request, profile)

    ui = {"api_visibility": "undocumented"}  # the documented API is app/api.py
    review_tab.select(on_open, [name], [counts, guidelines, guidelines_editor, guidelines_text],
                      api_visibility="private")
    guidelines_btn.click(on_save_guidelines, [guidelines_text], [guidelines, guidelines_text],
                         api_name="ui_guidelines", **ui)
    comment_btn.click(on_comment, [state, name, comment], [comments, comment], api_name="ui_comment", **ui)
    unskip_btn.click(on_return_skipped, [name], [counts], api_name="ui_return_skipped", **ui)
    claim_btn.click(on_claim, [name], view, api_name="ui_claim_next", **ui)
    for button, action in ((approve_btn, "approve"), (reject_btn, "reject"), (skip_btn, "skip")):
        button.click(on_decide(action), inputs, view, api_name=f"ui_{action}", **ui)
    undo_btn.click(on_undo, [state, name], view, api_name="ui_undo", **ui)
    caption.change(live_diff, [draft, caption], [diff], api_visibility="private", show_progress="hidden",
                   trigger_mode="always_last")
    export_tab = _build_export_tab(services)
    return SHORTCUT_JS, {"review": review_tab, "export": export_tab}


def _build_export_tab(services) -> gr.Tab:
    with gr.Tab("Export", id="export") as tab:
        gr.Markdown("Approved captions in the HumanCaption-HQ format (parquet) or LLaVA instruction JSON, "
                    "with a deterministic train/held-out split by image hash. Images never carry EXIF/GPS.")
        with gr.Row():
            fmt = gr.Radio(list(EXPORT_FORMATS), value="humancaptionhq", label="Format")
            status = gr.Dropdown(list(EXPORT_STATUSES), value="approved", label="Status")
            split = gr.Slider(0.5, 1.0, value=0.9, step=0.05, label="Train share")
            blur = gr.Checkbox(label="Blur faces in exported images")
        export_btn = gr.Button("Export", variant="primary", elem_id="export-btn")
        summary = gr.Textbox(label="Result", interactive=False)
        files = gr.File(label="Download", file_count="multiple", interactive=False)

    def on_export(fmt: str, status: str, blur: bool, split: float, request: gr.Request,
                  profile: gr.OAuthProfile | None, progress=gr.Progress()):
        identity = ask(services, "export", request, profile)
        text, archive, singles = run_export(services, identity, fmt, status, blur, split, progress)
        return text, [archive, *singles]

    export_btn.click(on_export, [fmt, status, blur, split], [summary, files], api_name="ui_export",
                     api_visibility="undocumented")
    return tab

"""The Data tab (reviewers and admins): browse the whole queue, like Argilla's and Label
Studio's data views: filter by status, reviewer and model version, search the text, sort, and
open any item (approved and rejected ones too) with its full history of claims and decisions."""

from __future__ import annotations

from datetime import datetime, timezone

import gradio as gr

from annotate.browse import ORDERS, Filter, browse
from annotate.records import STATUSES
from app.guard import Mistake, ask, md, user_error, warn_on_mistake

HEADERS = ["id", "status", "reviewer", "model", "caption", "changed (UTC)"]
HISTORY = ["time (UTC)", "who", "action", "detail", "undone"]
PAGE = 50


def rows(items) -> list[list]:
    return [[i.id, i.status, i.decided_by or i.claimed_by or "", i.draft.model_version,
             (i.caption[:160] + "…") if len(i.caption) > 160 else i.caption, i.created_at.strftime("%Y-%m-%d %H:%M")]
            for i in items]


def lease_left(item, now: datetime | None = None) -> str:
    if item.status != "in_review" or item.lease_expires_at is None:
        return ""
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    seconds = int((item.lease_expires_at - now).total_seconds())
    return "lease expired" if seconds <= 0 else f"lease: {seconds // 60} min {seconds % 60} s left"


def item_view(services, item) -> tuple:
    photo = services.outbox.copy(item.image.path) if item.image.path else None
    header = (f"Item **{item.id}** · **{item.status}** · model {md(item.draft.model_version)}"
              + (f" · claimed by {md(item.claimed_by)} ({lease_left(item)})" if item.claimed_by else "")
              + (f" · decided by {md(item.decided_by)}" if item.decided_by else "")
              + (f" · rejected: {md(item.reject_reason)}" if item.reject_reason else "")
              + ("" if photo else f" · photo not stored (URL {md(item.image.url)})"))
    history = [[a.created_at.strftime("%Y-%m-%d %H:%M:%S"), a.reviewer or "", a.action, a.detail or "",
                "yes" if a.undone else ""] for a in item.actions]
    return photo, header, item.draft.caption, item.caption, history


def build_data_tab(services) -> gr.Tab:
    with gr.Tab("Data", id="data") as tab:
        with gr.Row():
            status = gr.Dropdown(["any", *STATUSES], value="any", label="Status", scale=1)
            reviewer = gr.Textbox(label="Reviewer", scale=1, max_length=200)
            model = gr.Textbox(label="Model version", scale=1, max_length=200)
            text = gr.Textbox(label="Search the captions", scale=2, elem_id="data-search",
                              max_length=services.policy.config.limits.max_prompt_chars)
            order = gr.Dropdown(list(ORDERS), value="newest", label="Sort", scale=1)
        with gr.Row():
            search_btn = gr.Button("Search", variant="primary", elem_id="data-search-btn", scale=0)
            page = gr.Number(value=1, precision=0, minimum=1, label="Page", scale=0)
            found = gr.Markdown(elem_id="data-found")
        table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True, elem_id="data-table")
        with gr.Row():
            item_id = gr.Number(value=None, precision=0, label="Open item", scale=0, elem_id="data-item-id")
            open_btn = gr.Button("Open", scale=0, elem_id="data-open")
        header = gr.Markdown(elem_id="data-item")
        with gr.Row():
            photo = gr.Image(type="filepath", interactive=False, height=360, label="Photo", scale=2)
            draft = gr.Textbox(label="Model draft", lines=8, interactive=False, scale=3)
            caption = gr.Textbox(label="Current caption", lines=8, interactive=False, scale=3, elem_id="data-caption")
        history = gr.Dataframe(headers=HISTORY, interactive=False, wrap=True, label="History: claims, edits, decisions",
                               elem_id="data-history")
        from app.adjudicate_tab import build_adjudication

        adjudication = build_adjudication(services)

    def on_search(status: str, reviewer: str, model: str, text: str, order: str, page: float,
                  request: gr.Request, profile: gr.OAuthProfile | None):
        identity = ask(services, "review", request, profile)
        flt = Filter(status=None if status == "any" else status, reviewer=(reviewer or "").strip() or None,
                     model_version=(model or "").strip() or None, text=(text or "").strip() or None, order=order,
                     include_gold=services.policy.allows(identity, "export"))  # admins see gold items
        try:
            items, total = browse(services.store, flt, limit=PAGE, offset=(max(1, int(page or 1)) - 1) * PAGE)
        except ValueError as exc:
            raise Mistake(str(exc)) from None
        pages = max(1, -(-total // PAGE))
        return rows(items), f"**{total}** item{'' if total == 1 else 's'} · page {int(page or 1)} of {pages}"

    @warn_on_mistake(5)
    def on_open(item_id: float, request: gr.Request, profile: gr.OAuthProfile | None):
        ask(services, "review", request, profile)
        if not item_id:
            raise Mistake("Type the id of an item from the table.")
        try:
            item = services.store.get_item(int(item_id))
        except Exception as exc:
            raise user_error(exc) from None
        return item_view(services, item)

    def on_select(evt: gr.SelectData, current: list):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return current.iloc[row, 0] if hasattr(current, "iloc") else current[row][0]

    private = {"api_visibility": "private"}
    search = warn_on_mistake(2)(on_search)
    search_btn.click(search, [status, reviewer, model, text, order, page], [table, found], **private)
    text.submit(search, [status, reviewer, model, text, order, page], [table, found], **private)
    tab.select(search, [status, reviewer, model, text, order, page], [table, found], **private)

    def on_open_tab(request: gr.Request, profile: gr.OAuthProfile | None):  # the adjudication box: admins
        identity = services.policy.identify(request, profile)
        return gr.Accordion(visible=services.policy.allows(identity, "adjudicate"))

    tab.select(on_open_tab, None, [adjudication], **private)
    table.select(on_select, [table], [item_id], **private).then(
        on_open, [item_id], [photo, header, draft, caption, history], **private)
    open_btn.click(on_open, [item_id], [photo, header, draft, caption, history], **private)
    return tab

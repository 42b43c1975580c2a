"""The web UI factory: one `gr.Blocks` with a tab per part of the product.

`build_app` receives everything it needs (the model slot, the review store, the training job
runner, the access policy) and holds no module-level state, so tests build as many apps as
they like. Tabs a caller's role may not use are hidden when the page loads; the handlers
behind them refuse such callers anyway (app/policy.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from annotate.fetch import FetchLimits
from app.caption_tab import build_caption_tab, model_status, score_of, turn_of_message
from app.guard import Mistake, Outbox, ask, md, user_error, warn_on_mistake
from app.policy import Policy
from model.slot import ModelSlot

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
TITLE = "HumanVLM Studio"
# A tab the caller's role may not use is made non-interactive and hidden by this rule (Gradio's
# own `visible=False` leaves a tab's button on screen in this version).
PAGE_CSS = "button[role=tab][aria-disabled=true] { display: none !important; }"


@dataclass
class Services:
    """What the UI talks to. Optional parts hide their tabs when absent."""

    slot: ModelSlot
    store: object | None = None  # annotate.store.Store
    jobs: object | None = None  # train.jobs.JobRunner
    policy: Policy = field(default_factory=Policy)  # local mode unless told otherwise
    outbox: Outbox | None = None  # files offered for download
    fetch_limits: FetchLimits = field(default_factory=FetchLimits)  # URL-only photos fetched on claim
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.outbox is None:
            self.outbox = Outbox(self.policy.config.limits.retention_hours * 3600)

    @property
    def local(self) -> bool:
        return self.policy.config.mode == "local"


def build_app(services: Services) -> gr.Blocks:
    retention = int(services.policy.config.limits.retention_hours * 3600)
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(max(retention // 4, 60), retention)) as demo:
        with gr.Row():
            gr.Markdown(f"# {TITLE}\nCaption photos of people, correct the captions, fine-tune on the corrections.")
            who = gr.Markdown(elem_id="who-line")
            if services.policy.config.oauth:  # only on a real Space: elsewhere Gradio would mock it
                gr.LoginButton(scale=0)
        model_line = gr.Markdown(elem_id="model-line")
        banner = gr.Markdown(elem_id="demo-banner")
        header = lambda: model_status(services.slot)  # noqa: E731
        services.extra["header"] = (header, [model_line, banner])  # "Use in demo" refreshes it
        with gr.Tabs():
            with gr.Tab("Caption & Chat", id="caption") as caption_tab:
                send = _send_to_review_handler(services) if services.store is not None else None
                flag = _flag_handler(services) if services.store is not None else None
                caption = build_caption_tab(services, on_send_to_review=send, on_flag=flag)
            tabs, page_js = _optional_tabs(services)
            for tab in tabs.values():  # shown by the load event to the roles that may use them
                tab.interactive = tab.visible = services.local
        from app.api import register_api

        register_api(services)
        # The serving model can change ("Use in demo"): refresh the header whenever it may have.
        demo.load(header, None, [model_line, banner], api_visibility="private")
        caption_tab.select(header, None, [model_line, banner], api_visibility="private")
        _show_tabs_by_role(demo, services, tabs, who, caption["send_row"], caption["chatbot"])
        for js in page_js:
            demo.load(None, None, None, js=js, api_visibility="private")
        demo.load(services.outbox.sweep_quietly, None, None, api_visibility="private")
    return demo


def _optional_tabs(services: Services) -> tuple[dict, list[str]]:
    """Review, Export, Train, Models and Audit tabs, when their back ends are present.

    Returns the tabs by name and JavaScript snippets to run once on page load (shortcuts).
    """
    tabs: dict[str, gr.Tab] = {}
    page_js: list[str] = []
    if services.store is not None:
        from app.audit_tab import build_audit_tab
        from app.review_tab import build_review_tab

        js, review_tabs = build_review_tab(services)
        page_js.append(js)
        tabs |= review_tabs
    if services.jobs is not None:
        from app.train_tab import build_train_tabs

        tabs |= build_train_tabs(services)
    if services.store is not None:
        from app.data_tab import build_data_tab

        tabs["data"] = build_data_tab(services)
        tabs["audit"] = build_audit_tab(services)
    return tabs, page_js


def _show_tabs_by_role(demo: gr.Blocks, services: Services, tabs: dict, who: gr.Markdown, send_row,
                       chatbot) -> None:
    names = list(tabs)

    def on_load(request: gr.Request, profile: gr.OAuthProfile | None):
        identity = services.policy.identify(request, profile)
        visible = services.policy.visible_tabs(identity)
        can_send = services.policy.allows(identity, "send_to_review") and services.store is not None
        line = "" if services.local else (
            f"Signed in as **{md(identity.name)}** ({identity.role})" if identity.name
            else "Visiting anonymously: caption and chat" + (" (sign in to review)" if services.policy.config.oauth else ""))
        feedback = ("Like", "Dislike") if can_send else None  # a dislike queues the answer for review
        return (line, gr.Row(visible=can_send), gr.Chatbot(feedback_options=feedback),
                *[gr.Tab(interactive=visible.get(n, False), visible=visible.get(n, False)) for n in names])

    demo.load(on_load, None, [who, send_row, chatbot, *[tabs[n] for n in names]], api_visibility="private")


def _queue_photo(services: Services, identity, session: dict, caption: str, consent: bool, licence: str) -> None:
    """Queue the session's photo with its first turn's answer as the model draft."""
    from annotate.drafts import PHOTO_LICENCES, enqueue_caption

    if not consent:
        raise Mistake("Tick the consent box first: the photo is stored for reviewers and may be used "
                      "for training, so the person in it must have agreed.")
    if licence not in PHOTO_LICENCES:
        raise Mistake(f"Pick the photo's licence ({', '.join(PHOTO_LICENCES)}).")
    try:
        caption = services.policy.check_caption(caption)
        sender = identity.name or identity.who
        item_id, duplicate = enqueue_caption(services.store, services.slot.get(), session, caption, sender,
                                             licence=licence, consent=f"confirmed by {sender} at sending")
    except Exception as exc:
        raise user_error(exc) from None
    if duplicate:
        gr.Info(f"This photo is already in the review queue (item {item_id}).")
    else:
        gr.Info(f"Sent to the review queue as item {item_id}.")


def _send_to_review_handler(services: Services):
    @warn_on_mistake(0)
    def send_to_review(session: dict, caption: str, consent: bool, licence: str, request: gr.Request,
                       profile: gr.OAuthProfile | None):
        identity = ask(services, "send_to_review", request, profile)
        # A caption typed by hand, with no model draft behind it, cannot be queued either.
        if not session or not session.get("photo") or not session.get("captioned") or not session.get("turns") \
                or not (caption or "").strip():
            raise Mistake("Caption a photo first, then send the caption to review.")
        _queue_photo(services, identity, {**session, "confidence": score_of(session, 0)}, caption, consent, licence)

    return send_to_review


def _flag_handler(services: Services):
    """Thumbs down on an answer: the answer goes to the review queue as a draft to correct."""

    @warn_on_mistake(0)
    def on_like(data: gr.LikeData, session: dict, consent: bool, licence: str, request: gr.Request,
                profile: gr.OAuthProfile | None):
        if data.liked:
            gr.Info("Thanks: noted as a good answer.")
            return
        identity = ask(services, "send_to_review", request, profile)
        turn = turn_of_message(session, data.index)
        if turn is None:
            raise Mistake("That answer is no longer in this chat.")
        question, answer = session["turns"][turn]
        flagged = {**session, "turns": [(question, answer)], "confidence": score_of(session, turn),
                   "preset": "custom" if turn or not session.get("captioned") else session.get("preset")}
        _queue_photo(services, identity, flagged, answer, consent, licence)

    return on_like

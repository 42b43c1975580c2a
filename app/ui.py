"""The web UI factory: one `gr.Blocks` with a tab per part of the product.

`build_app` receives everything it needs (the model slot, the review store, the training job
runner) and holds no module-level state, so tests build as many apps as they like.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from app.caption_tab import build_caption_tab, model_status
from model.slot import ModelSlot

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
TITLE = "HumanVLM Studio"


@dataclass
class Services:
    """What the UI talks to. Optional parts hide their tabs when absent."""

    slot: ModelSlot
    store: object | None = None  # annotate.store.Store
    jobs: object | None = None  # train.jobs.JobRunner
    auth_enabled: bool = False
    extra: dict = field(default_factory=dict)


def build_app(services: Services) -> gr.Blocks:
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\nCaption photos of people, correct the captions, fine-tune on the corrections.")
        model_line = gr.Markdown(elem_id="model-line")
        banner = gr.Markdown(elem_id="demo-banner")
        with gr.Tabs():
            with gr.Tab("Caption & Chat", id="caption") as caption_tab:
                send = _send_to_review_handler(services) if services.store is not None else None
                build_caption_tab(services.slot, on_send_to_review=send)
            page_js = _optional_tabs(services)
        # The serving model can change ("Use in demo"): refresh the header whenever it may have.
        demo.load(lambda: model_status(services.slot), None, [model_line, banner], api_name=False)
        caption_tab.select(lambda: model_status(services.slot), None, [model_line, banner], api_name=False)
        for js in page_js:
            demo.load(None, None, None, js=js, api_name=False)
    return demo


def _optional_tabs(services: Services) -> list[str]:
    """Review, Export, Train and Models tabs, when their back ends are present.

    Returns JavaScript snippets the tabs need run once on page load (keyboard shortcuts).
    """
    page_js: list[str] = []
    if services.store is not None:
        from app.review_tab import build_review_tab

        page_js.append(build_review_tab(services))
    if services.jobs is not None:
        from app.train_tab import build_train_tabs

        build_train_tabs(services)
    return page_js


def _send_to_review_handler(services: Services):
    def send_to_review(session: dict, caption: str, request: gr.Request):
        from annotate.drafts import enqueue_caption

        # A caption typed by hand, with no model draft behind it, cannot be queued either.
        if not session or not session.get("photo") or not session.get("turns") or not (caption or "").strip():
            raise gr.Error("Caption a photo first, then send the caption to review.")
        try:
            sender = getattr(request, "username", None) or "demo"
            item_id, duplicate = enqueue_caption(services.store, services.slot.get(), session, caption, sender)
        except Exception as exc:
            if getattr(exc, "user_facing", False):
                raise gr.Error(str(exc)) from None
            raise
        if duplicate:
            gr.Info(f"This photo is already in the review queue (item {item_id}).")
        else:
            gr.Info(f"Sent to the review queue as item {item_id}.")

    return send_to_review

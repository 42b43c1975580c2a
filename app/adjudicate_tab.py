"""The adjudication view (admins): overlap items whose independent corrections disagree, two
corrections side by side with their word diff; keep one, or write the merged caption. The
final caption records which (`final_source`: "pick:<reviewer>" or "merge")."""

from __future__ import annotations

import gradio as gr

from app.guard import Mistake, ask, audit, user_error, warn_on_mistake
from app.review_tab import word_diff

HEADERS = ["id", "agreement", "reviewers"]


def disagreement_rows(store, threshold: float) -> list[list]:
    return [[d.item.id, round(d.agreement, 3), ", ".join(r.reviewer for r in d.reviews)]
            for d in store.disagreements(threshold=threshold, limit=100)]


def build_adjudication(services) -> gr.Accordion:
    store = services.store
    with gr.Accordion("Adjudicate disagreements (admins)", open=False, visible=services.local) as box:
        with gr.Row():
            threshold = gr.Slider(0, 1, value=0.5, step=0.05, label="Agreement below", scale=2)
            list_btn = gr.Button("List", size="sm", scale=0, elem_id="adj-list")
        table = gr.Dataframe(headers=HEADERS, interactive=False, elem_id="adj-table")
        item_id = gr.Number(value=None, precision=0, label="Item", elem_id="adj-item")
        with gr.Row():
            a_name = gr.Textbox(label="Reviewer A", interactive=False, scale=1)
            a_caption = gr.Textbox(label="A's caption", lines=5, interactive=False, scale=3)
            b_name = gr.Textbox(label="Reviewer B", interactive=False, scale=1)
            b_caption = gr.Textbox(label="B's caption", lines=5, interactive=False, scale=3)
        diff = gr.HighlightedText(label="A → B (word diff)", combine_adjacent=True,
                                  color_map={"-": "red", "+": "green"}, elem_id="adj-diff")
        merged = gr.Textbox(label="Or the merged caption", lines=3, elem_id="adj-merged",
                            max_length=services.policy.config.limits.max_caption_chars)
        with gr.Row():
            keep_a = gr.Button("Keep A", elem_id="adj-keep-a")
            keep_b = gr.Button("Keep B", elem_id="adj-keep-b")
            save_merged = gr.Button("Save merged", variant="primary", elem_id="adj-merge")
        result = gr.Markdown(elem_id="adj-result")

    def on_list(threshold: float, request: gr.Request, profile: gr.OAuthProfile | None):
        ask(services, "adjudicate", request, profile)
        return disagreement_rows(store, float(threshold))

    @warn_on_mistake(5)
    def on_pick_item(item_id: float, request: gr.Request, profile: gr.OAuthProfile | None):
        ask(services, "adjudicate", request, profile)
        reviews = [r for r in store.reviews(int(item_id or 0)) if r.status == "approved"] if item_id else []
        if len(reviews) < 2:
            raise Mistake("Pick an item from the list: it needs two approved corrections to compare.")
        a, b = reviews[0], reviews[1]
        return a.reviewer, a.caption, b.reviewer, b.caption, word_diff(a.caption, b.caption)

    def settle(which: str):
        @warn_on_mistake(2)
        def handler(item_id: float, a: str, b: str, merged: str, threshold: float, request: gr.Request,
                    profile: gr.OAuthProfile | None):
            identity = ask(services, "adjudicate", request, profile, target=f"item {item_id}")
            if not item_id:
                raise Mistake("Pick an item from the list first.")
            pick = {"a": a, "b": b}.get(which)
            caption = None if pick else services.policy.check_caption(merged).strip()
            if not pick and not caption:
                raise Mistake("Write the merged caption first.")
            try:
                store.adjudicate(int(item_id), identity.name, pick=pick or None, caption=caption)
            except Exception as exc:
                raise user_error(exc) from None
            audit(services, identity, "adjudicate", f"item {int(item_id)}", f"pick {pick}" if pick else "merged caption")
            return f"Item {int(item_id)} settled ({'kept ' + pick if pick else 'merged'}).", \
                disagreement_rows(store, float(threshold))
        return handler

    private = {"api_visibility": "private"}
    list_btn.click(on_list, [threshold], [table], **private)
    item_id.submit(on_pick_item, [item_id], [a_name, a_caption, b_name, b_caption, diff], **private)
    def on_row(evt: gr.SelectData, rows):
        return rows.iloc[evt.index[0], 0]

    table.select(on_row, [table], [item_id], **private).then(
        on_pick_item, [item_id], [a_name, a_caption, b_name, b_caption, diff], **private)
    for button, which in ((keep_a, "a"), (keep_b, "b"), (save_merged, "merge")):
        button.click(settle(which), [item_id, a_name, b_name, merged, threshold], [result, table], **private)
    return box

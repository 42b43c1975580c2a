"""The "Caption & Chat" tab: a streaming caption of a photo, then a chat about it.

Handlers first (plain functions), then `build_caption_tab`, which lays out the components and
wires the events. Per-user state (the photo and the conversation) lives in `gr.State`.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from annotate.drafts import PHOTO_LICENCES
from app.components import PhotoInput
from app.guard import ask, md, user_error
from model.generate import GenerationSettings, Scored
from model.images import ImageError, load_image
from model.prompts import PRESETS, resolve_prompt
from model.slot import ModelSlot

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "static" / "examples"
GPU = "gpu"  # one concurrency group for every event that runs the model


def new_session(photo: str | None = None) -> dict:
    """A user's conversation: the photo and [(question, answer)] turns, the image in turn one.

    "scores" runs beside "turns": the model's (mean, min) token log-probability of each answer,
    None where unknown (a stopped answer). "captioned": turn one is the Caption button's, shown
    in the Caption box rather than in the chat.
    """
    return {"photo": photo, "turns": [], "scores": [], "captioned": False}


def _open_photo(photo: str | None):
    if not photo:
        raise gr.Error("Upload a photo of a person first (or pick an example).")
    try:
        return load_image(photo)
    except ImageError as exc:
        raise gr.Error(str(exc)) from None


def _settings(max_new_tokens, temperature, top_p, repetition_penalty) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=int(max_new_tokens), temperature=float(temperature),
                              top_p=float(top_p), repetition_penalty=float(repetition_penalty))


def _messages(session: dict) -> list[dict]:
    """The chat on screen: the photo first (the model sees it with the first turn), then every
    turn but the caption's, which the Caption box above already shows."""
    out = [{"role": "user", "content": [{"path": session["photo"], "alt_text": "The photo"}]}] \
        if session.get("photo") else []
    for question, answer in session["turns"][1 if session.get("captioned") else 0:]:
        out.append({"role": "user", "content": question})
        if answer is not None:
            out.append({"role": "assistant", "content": answer})
    return out


def turn_of_message(session: dict | None, index) -> int | None:
    """The turn whose answer is message `index` of the chat on screen (see _messages), or None."""
    index = index[0] if isinstance(index, (list, tuple)) else index
    if not session or not isinstance(index, int) or not session.get("photo"):
        return None
    shown = index - 1  # the photo comes first
    turn = shown // 2 + (1 if session.get("captioned") else 0)
    turns = session.get("turns") or []
    if shown < 1 or shown % 2 != 1 or turn >= len(turns) or turns[turn][1] is None:
        return None
    return turn


def _aligned_scores(session: dict) -> list:
    """One score per turn (None where unknown)."""
    turns, scores = session.get("turns") or [], list(session.get("scores") or [])
    return (scores + [None] * len(turns))[:len(turns)]


def score_of(session: dict, turn: int):
    scores = session.get("scores") or []
    return scores[turn] if turn < len(scores) else None


def _stream(slot: ModelSlot, image, turns, settings, scores: bool):
    """The answer's pieces, then (with `scores`) its (mean, min) confidence as a tuple."""
    try:
        for piece in slot.get().stream(image, turns, settings, scores=scores):
            yield (piece.mean, piece.min) if isinstance(piece, Scored) else piece
    except ImageError as exc:
        raise gr.Error(str(exc)) from None
    except Exception as exc:
        if getattr(exc, "user_facing", False):
            raise gr.Error(str(exc)) from None
        raise


def _answer(slot: ModelSlot, image, session: dict, question: str, settings, scores: bool = True):
    """Stream the answer to `question` as the session's newest turn: every update is the session
    so far (Stop ends the generator between two updates, and the partial answer on screen must
    still be the turn that chat, regenerate and "Send to review" work from). `scores`: record the
    model's confidence (for drafts: pointless for callers who cannot send to review)."""
    turns, known = list(session["turns"]), _aligned_scores(session)
    text = ""
    confidence = None
    for piece in _stream(slot, image, [*turns, (question, None)], settings, scores):
        if isinstance(piece, tuple):  # the last item: the answer's confidence
            confidence = piece
            continue
        text += piece
        yield text, {**session, "turns": [*turns, (question, text.strip())], "scores": known}
    yield text.strip(), {**session, "turns": [*turns, (question, text.strip())], "scores": [*known, confidence]}


def caption_photo(slot: ModelSlot, photo, preset, prompt, max_new_tokens, temperature, top_p, repetition_penalty,
                  scores: bool = True):
    """Stream a caption into the Caption box; the exchange is the first turn of the chat about
    this photo (the chat itself shows the photo, not the caption a second time)."""
    image = _open_photo(photo)
    try:
        question = resolve_prompt(preset, prompt)
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
    settings = _settings(max_new_tokens, temperature, top_p, repetition_penalty)
    session = {**new_session(photo), "captioned": True, "settings": settings.as_dict(),
               "preset": "custom" if prompt and prompt.strip() else preset}
    # The chat (the photo alone) goes with the first update only, not with every token: each
    # update that carries a file cost 0.1-0.2 s (tests/perf/bench_public: 0.54 s for a caption
    # against 0.75 s when the last update carried it again, 1.5 s when every update did).
    chat_shown = _messages(session)
    for text, session in _answer(slot, image, session, question, settings, scores):
        yield text, chat_shown, session
        chat_shown = gr.skip()


def chat(slot: ModelSlot, message, session, photo, max_new_tokens, temperature, top_p, repetition_penalty,
         scores: bool = True):
    """Answer a question about the photo, streaming; earlier turns stay in the context."""
    message = (message or "").strip()
    if not message:
        raise gr.Error("Type a question about the photo.")
    if not session or session.get("photo") != photo:
        session = new_session(photo)
    image = _open_photo(photo)
    settings = _settings(max_new_tokens, temperature, top_p, repetition_penalty)
    for _, session in _answer(slot, image, session, message, settings, scores):
        yield "", _messages(session), session


# Regenerate at temperature 0 would return the identical greedy answer: it samples instead.
REGENERATE_TEMPERATURE = 0.7


def regenerate(slot: ModelSlot, session, photo, max_new_tokens, temperature, top_p, repetition_penalty,
               scores: bool = True):
    """Ask the last question again, sampling (another answer, not the same greedy one). When the
    last turn is the caption's, the new caption goes to the Caption box.

    Yields (message box, chat, session, caption box)."""
    if not session or not session.get("turns"):
        raise gr.Error("Nothing to regenerate yet.")
    if not temperature or float(temperature) <= 0:
        temperature = REGENERATE_TEMPERATURE
        gr.Info(f"Regenerating with temperature {REGENERATE_TEMPERATURE} (at 0 the answer would be the same).")
    last_question = session["turns"][-1][0]
    if session.get("captioned") and len(session["turns"]) == 1:
        image = _open_photo(photo)
        settings = _settings(max_new_tokens, temperature, top_p, repetition_penalty)
        trimmed = {**session, "turns": [], "scores": [], "photo": photo}
        for text, updated in _answer(slot, image, trimmed, last_question, settings, scores):
            yield "", _messages(updated), updated, text
        return
    trimmed = {**session, "turns": session["turns"][:-1], "scores": (session.get("scores") or [])[:-1]}
    if not trimmed["turns"]:  # the image goes with the first turn
        trimmed = new_session(photo)
    for update in chat(slot, last_question, trimmed, photo, max_new_tokens, temperature, top_p, repetition_penalty,
                       scores):
        yield (*update, gr.skip())


def clear_chat(photo):
    session = new_session(photo)
    return _messages(session), session, ""


def model_status(slot: ModelSlot) -> tuple[str, str]:
    """(model line, banner): the banner is empty unless the untrained demo model is serving."""
    info = slot.get().info
    line = f"**Model:** {info.describe()} · version `{info.version}`"
    banner = ""
    if info.is_demo and info.adapter:
        banner = "ℹ️ The demo base model with an adapter fine-tuned on your reviewers' corrections."
    elif info.is_demo:
        why = (info.note or "the demo model was asked for").replace(" (captions are gibberish)", "")
        banner = (f"⚠️ **Untrained demo model.** Its captions are gibberish until it is fine-tuned. "
                  f"Why: {md(why)}")
    return line, banner


def build_caption_tab(services, on_send_to_review=None, on_flag=None) -> dict:
    """Lay out the tab inside the current `gr.Blocks`; returns components other tabs reuse.

    Every event asks the policy (app/guard.py) and applies its limits before the model runs.
    """
    slot, policy = services.slot, services.policy
    limits = policy.config.limits
    session = gr.State(new_session())
    with gr.Row():
        # The main action stays on screen at 1366x768 after an upload: photo, then the buttons.
        with gr.Column(scale=5):
            photo = PhotoInput(label="Photo of a person", type="filepath", height=340, elem_id="photo")
            with gr.Row():
                preset = gr.Dropdown(list(PRESETS), value="detailed", label="Preset", scale=2, min_width=120)
                caption_btn = gr.Button("Caption", variant="primary", elem_id="caption-btn", scale=1, min_width=90)
                stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-btn", scale=1, min_width=70,
                                     interactive=False)
            prompt = gr.Textbox(label="Or your own prompt", placeholder="e.g. What is she holding?",
                                max_length=limits.max_prompt_chars)
            with gr.Accordion("Generation settings", open=False):
                max_new = gr.Slider(16, limits.max_new_tokens, value=min(400, limits.max_new_tokens), step=8,
                                    label="Max new tokens", elem_id="max-new-tokens")
                temperature = gr.Slider(0, 1.5, value=0, step=0.05, label="Temperature (0 = greedy)")
                top_p = gr.Slider(0.05, 1, value=0.9, step=0.05, label="Top-p")
                rep = gr.Slider(1, 2, value=1.0, step=0.05, label="Repetition penalty")
            gr.Examples(examples=_examples(), inputs=[photo, preset, prompt], label="Examples (public domain photos)")
        with gr.Column(scale=6):
            caption = gr.Textbox(label="Caption", lines=8, interactive=True, elem_id="caption-out",
                                 buttons=["copy"])
            with gr.Row(visible=on_send_to_review is not None) as send_row:
                consent = gr.Checkbox(label="The person in the photo agreed to it being stored and used "
                                            "for training, and I may share it", elem_id="consent", scale=3)
                licence = gr.Dropdown(list(PHOTO_LICENCES), value=None, label="Photo licence", elem_id="licence",
                                      scale=1)
                review_btn = gr.Button("Send to review", elem_id="send-review-btn", scale=1)
            chatbot = gr.Chatbot(label="Chat about the photo (its caption is the box above)", height=380,
                                 elem_id="chatbot",
                                 sanitize_html=True, render_markdown=True)
            with gr.Row():
                message = gr.Textbox(label="Ask about the photo", placeholder="What is the person wearing?",
                                     scale=4, elem_id="chat-in", submit_btn=True, max_length=limits.max_prompt_chars)
            with gr.Row():
                regen_btn = gr.Button("Regenerate")
                clear_btn = gr.Button("Clear")
    settings = [max_new, temperature, top_p, rep]

    # Closures, not functools.partial: Gradio finds gr.Request by the parameter's type hint.
    def on_caption(photo: str, preset: str, prompt: str, max_new: float, temperature: float, top_p: float,
                   rep: float, request: gr.Request):
        scores = _may_send(services, ask(services, "caption", request))
        prompt = _checked(policy, prompt, "prompt")
        yield from caption_photo(slot, photo, preset, prompt, policy.cap_tokens(max_new), temperature, top_p, rep,
                                 scores)

    def on_chat(message: str, session: dict, photo: str, max_new: float, temperature: float, top_p: float,
                rep: float, request: gr.Request):
        scores = _may_send(services, ask(services, "chat", request))
        message = _checked(policy, message, "message")
        yield from chat(slot, message, _trimmed(policy, session), photo, policy.cap_tokens(max_new), temperature,
                        top_p, rep, scores)

    def on_regenerate(session: dict, photo: str, max_new: float, temperature: float, top_p: float, rep: float,
                      request: gr.Request):
        scores = _may_send(services, ask(services, "chat", request))
        yield from regenerate(slot, _trimmed(policy, session), photo, policy.cap_tokens(max_new), temperature, top_p,
                              rep, scores)

    gpu = {"concurrency_id": GPU, "concurrency_limit": 1}
    ui = {"api_visibility": "undocumented"}  # the documented API is app/api.py
    # Caption is disabled and Stop enabled while an answer streams; back when it ends or stops.
    buttons = [caption_btn, stop_btn]
    busy = lambda: (gr.Button(interactive=False), gr.Button(interactive=True))  # noqa: E731
    idle = lambda: (gr.Button(interactive=True), gr.Button(interactive=False))  # noqa: E731
    quick = {"queue": False, "api_visibility": "private", "show_progress": "hidden"}
    cap_event = caption_btn.click(busy, None, buttons, **quick).then(
        on_caption, [photo, preset, prompt, *settings], [caption, chatbot, session], api_name="ui_caption", **ui, **gpu)
    chat_event = message.submit(busy, None, buttons, **quick).then(
        on_chat, [message, session, photo, *settings], [message, chatbot, session], api_name="ui_chat", **ui, **gpu)
    regen_event = regen_btn.click(busy, None, buttons, **quick).then(
        on_regenerate, [session, photo, *settings], [message, chatbot, session, caption], api_name="ui_regenerate",
        **ui, **gpu)
    for event in (cap_event, chat_event, regen_event):
        event.then(idle, None, buttons, **quick)
    stop_btn.click(idle, None, buttons, cancels=[cap_event, chat_event, regen_event], queue=False,
                   api_visibility="private", show_progress="hidden")
    clear_btn.click(clear_chat, [photo], [chatbot, session, message], api_name="ui_clear_chat", **ui)

    def on_new_photo(photo: str):
        """A new photo starts afresh: the caption and chat on screen described the old one. A
        broken, disguised or oversized photo is refused as it arrives, not at Caption."""
        kept = gr.skip()
        if photo:
            try:
                load_image(photo)
            except ImageError as exc:
                gr.Warning(str(exc))
                kept, photo = None, None
        return (kept, *clear_chat(photo), "", gr.Button(interactive=True), gr.Button(interactive=False))

    # Two listeners: the clear must happen even when a cancel finds its event already gone.
    photo.change(None, None, None, cancels=[cap_event, chat_event, regen_event], api_visibility="private")
    photo.change(on_new_photo, [photo], [photo, chatbot, session, message, caption, caption_btn, stop_btn],
                 api_visibility="private")
    if on_send_to_review is not None:
        review_btn.click(on_send_to_review, [session, caption, consent, licence], [], api_name="ui_send_to_review", **ui)
    if on_flag is not None:  # thumbs down on an answer: it becomes a draft to correct
        chatbot.like(on_flag, [session, consent, licence], None, api_visibility="private")
    return {"photo": photo, "caption": caption, "session": session, "send_row": send_row, "chatbot": chatbot}


EXAMPLE_PROMPTS = {"astronaut.png": ("face", ""), "camera.png": ("brief", "What is he doing, and with what?")}


def _examples() -> list[list]:
    """Each example photo with a preset or a question worth trying on it."""
    return [[str(p), *EXAMPLE_PROMPTS.get(p.name, ("detailed", ""))] for p in sorted(EXAMPLES_DIR.glob("*.png"))]


def _may_send(services, identity) -> bool:
    """Whether this caller's answers may become drafts (so their confidence is worth recording)."""
    return services.store is not None and services.policy.allows(identity, "send_to_review")


def _trimmed(policy, session: dict | None) -> dict | None:
    """The session with the turns the model sees (the first and the newest), scores kept beside them."""
    if not session:
        return session
    kept = policy.trim_turns(list(zip(session.get("turns") or [], _aligned_scores(session))))
    return {**session, "turns": [t for t, _ in kept], "scores": [c for _, c in kept]}


def _checked(policy, text: str | None, what: str) -> str:
    try:
        return policy.check_text(text, what)
    except Exception as exc:
        raise user_error(exc) from None

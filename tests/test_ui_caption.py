"""The Caption & Chat tab, launched for real and driven with gradio_client."""

import pytest
from gradio_client import Client, handle_file

from model.loader import LoadConfig
from model.slot import ModelSlot
from tests.conftest import ASTRONAUT, running_app

SETTINGS = [24, 0.0, 0.9, 1.0]  # max new tokens, temperature, top-p, repetition penalty


@pytest.fixture(scope="module")
def client():
    slot = ModelSlot(LoadConfig(model="demo"))
    with running_app(slot=slot) as url:
        yield Client(url, verbose=False), slot


def test_caption_streams_into_the_box_and_seeds_the_chat(client):
    c, slot = client
    job = c.submit(handle_file(str(ASTRONAUT)), "brief", "", *SETTINGS, api_name="/ui_caption")
    updates = list(job)
    final_caption, _ = job.outputs()[-1]
    chat = job.outputs()[0][1]  # the chat goes with the first update only (later ones leave it as it is)
    assert all(update[1] == {"__type__": "update"} for update in job.outputs()[1:])
    assert len(updates) > 2, "the caption should arrive in several streamed updates"
    assert final_caption
    # The final caption is what the model says for this photo, through the same code path.
    from model.images import load_image
    from model.generate import GenerationSettings
    from model.prompts import PRESETS

    expected = slot.get().caption(load_image(ASTRONAUT), PRESETS["brief"], GenerationSettings(max_new_tokens=24))
    assert final_caption == expected
    # The chat shows the photo, not the caption a second time.
    assert [m["role"] for m in chat] == ["user"] and files(chat[0]) and text(chat[0]) == ""
    assert final_caption not in str(chat)


def text(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)


def files(message: dict) -> list:
    content = message["content"]
    return [] if isinstance(content, str) else [part for part in content if part.get("type") == "file"]


def test_two_turn_chat_streams_and_keeps_context(client):
    c, _ = client  # the conversation lives in the client's session state on the server
    photo = handle_file(str(ASTRONAUT))
    c.predict(photo, api_name="/ui_clear_chat")
    job = c.submit("What is she wearing?", photo, *SETTINGS, api_name="/ui_chat")
    first = list(job)
    message, chat = job.outputs()[-1]
    assert message == "" and len(first) > 2
    assert [m["role"] for m in chat] == ["user", "user", "assistant"] and files(chat[0])  # the photo first
    job = c.submit("And her hair?", photo, *SETTINGS, api_name="/ui_chat")
    assert len(list(job)) > 2
    _, chat = job.outputs()[-1]
    assert [m["role"] for m in chat] == ["user", "user", "assistant", "user", "assistant"]
    assert [text(m) for m in chat[1:] if m["role"] == "user"] == ["What is she wearing?", "And her hair?"]
    assert all(text(m) for m in chat[1:])


def test_regenerate_asks_the_last_question_again(client):
    c, _ = client
    photo = handle_file(str(ASTRONAUT))
    c.predict(photo, api_name="/ui_clear_chat")
    _, chat = c.predict("Describe her.", photo, *SETTINGS, api_name="/ui_chat")
    _, regen_chat, _caption = c.predict(photo, *SETTINGS, api_name="/ui_regenerate")
    assert len(regen_chat) == len(chat) == 3
    assert text(regen_chat[1]) == "Describe her."
    # At temperature 0 the first answer is greedy; Regenerate samples, so a different one comes.
    assert text(regen_chat[2]) and text(regen_chat[2]) != text(chat[2])


def test_regenerate_right_after_caption_makes_a_new_caption(client):
    c, _ = client
    photo = handle_file(str(ASTRONAUT))
    caption, _chat = c.predict(photo, "brief", "", *SETTINGS, api_name="/ui_caption")
    _, chat, new_caption = c.predict(photo, *SETTINGS, api_name="/ui_regenerate")
    assert len(chat) == 1 and files(chat[0])  # still only the photo in the chat
    assert new_caption and new_caption != caption  # sampled: another caption, in the Caption box


def test_bad_upload_gets_a_clear_message(client, tmp_path):
    c, _ = client
    fake = tmp_path / "portrait.jpg"
    fake.write_text("definitely not a photo")
    with pytest.raises(Exception) as err:
        c.predict(handle_file(str(fake)), "brief", "", *SETTINGS, api_name="/ui_caption")
    assert "not an image" in str(err.value)
    assert "Traceback" not in str(err.value)


def test_missing_photo_and_empty_question(client):
    c, _ = client
    with pytest.raises(Exception, match="Upload a photo"):
        c.predict(None, "brief", "", *SETTINGS, api_name="/ui_caption")
    with pytest.raises(Exception, match="Type a question"):
        c.predict("  ", handle_file(str(ASTRONAUT)), *SETTINGS, api_name="/ui_chat")


def test_a_stopped_caption_is_the_turn_chat_and_review_work_from(client):
    """Stop ends the handler between two streamed updates: the last session it sent must
    already hold the partial caption, or Regenerate says "nothing yet" and Send to review fails."""
    from app.caption_tab import caption_photo, regenerate

    _, slot = client
    updates = caption_photo(slot, str(ASTRONAUT), "brief", "", 64, 0.0, 0.9, 1.0)
    for _ in range(3):
        shown, _, session = next(updates)
    updates.close()  # what Stop does to the generator
    assert session["turns"] == [(session["turns"][0][0], shown.strip())] and shown.strip()
    assert session["preset"] == "brief" and session["settings"]["max_new_tokens"] == 64
    assert session["scores"] == []  # a stopped answer's confidence is unknown
    _, chat, session, caption = list(regenerate(slot, session, str(ASTRONAUT), 8, 0.0, 0.9, 1.0))[-1]
    assert len(chat) == 1 and caption and session["turns"][0][1] == caption
    assert len(session["scores"]) == 1 and session["scores"][0][0] <= 0  # a mean log-probability


def test_trimmed_turns_keep_their_own_confidence():
    """The model sees the first turn and the newest: each kept turn keeps its own score, so a
    flagged answer's draft never carries another answer's confidence."""
    from dataclasses import replace

    from app.caption_tab import _trimmed, score_of
    from app.policy import Policy, resolve_access

    access = resolve_access("127.0.0.1", env={})
    policy = Policy(replace(access, limits=replace(access.limits, max_chat_turns=3)))
    session = {"photo": "p.jpg", "captioned": True, "turns": [(f"q{n}", f"a{n}") for n in range(5)],
               "scores": [(-n, -n - 1) for n in range(4)]}  # the newest answer was stopped: no score
    kept = _trimmed(policy, session)
    assert [q for q, _ in kept["turns"]] == ["q0", "q3", "q4"]
    assert [score_of(kept, n) for n in range(3)] == [(0, -1), (-3, -4), None]

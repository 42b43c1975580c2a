"""The Review and Export tabs, launched for real and driven with gradio_client on a real SQLite file."""

import pyarrow.parquet as pq
import pytest
from gradio_client import Client
from PIL import Image

from annotate.records import Draft
from annotate.store import Store
from app.review_tab import word_diff
from tests.conftest import ASTRONAUT, running_app


def draft(text: str) -> Draft:
    return Draft(model_name="demo", model_version="demo-v2", caption=text, preset="detailed")


@pytest.fixture()
def served(tmp_path):
    store = Store(data_dir=tmp_path / "data")
    store.enqueue(ASTRONAUT, draft("A woman in an orange suit stands in front of a flag."))
    for i, colour in enumerate(["red", "green"]):
        store.enqueue(Image.new("RGB", (64, 64), colour), draft(f"A {colour} square {i}."))
    with running_app(store=store) as url:
        yield store, url
    store.close()


def fields(view):
    names = ["photo", "source", "draft", "caption", "face", "body", "action", "background", "diff",
             "history", "status", "counts"]
    return dict(zip(names, view))


def test_claim_edit_approve_then_next(served):
    store, url = served
    alice = Client(url, verbose=False)
    first = fields(alice.predict("alice", api_name="/ui_claim_next"))
    assert first["draft"].startswith("A woman in an orange suit")
    assert first["photo"] and "status **in_review**" in first["status"]
    corrected = "A smiling woman in an orange flight suit stands in front of an American flag."
    nxt = fields(alice.predict("alice", corrected, "smiling", "orange flight suit", "", "flag", "",
                               ["missing_detail", "wrong_attribute"], api_name="/ui_approve"))
    assert "approved" in nxt["status"] and nxt["draft"].startswith("A red square")
    item = store.get_item(1)
    assert item.status == "approved" and item.caption == corrected and item.decided_by == "alice"
    assert item.fields == {"face": "smiling", "body": "orange flight suit", "background": "flag"}
    assert set(item.tags) == {"missing_detail", "wrong_attribute"}  # what the reviewer said they fixed
    assert 0 < item.edit_rate < 1
    assert [r.reviewer for r in item.history] == ["alice"]
    assert store.reviewer_counts("alice")["approved"] == 1


def test_reject_needs_a_reason_and_undo_restores(served):
    store, url = served
    bob = Client(url, verbose=False)
    bob.predict("bob", api_name="/ui_claim_next")
    # A user mistake is a warning (nothing painted red); the item is untouched and still held.
    bob.predict("bob", "x", "", "", "", "", "", [], api_name="/ui_reject")
    assert store.get_item(1).status == "in_review" and store.get_item(1).claimed_by == "bob"
    bob.predict("bob", "x", "", "", "", "", "not a photo of a person", [], api_name="/ui_reject")
    rejected = store.get_item(1)
    assert rejected.status == "rejected" and rejected.reject_reason == "not a photo of a person"
    undone = fields(bob.predict("bob", api_name="/ui_undo"))
    assert "Item **1**" in undone["status"] and store.get_item(1).status != "rejected"
    # The item claimed after the reject went back to the queue: bob holds one claim.
    held = [i for i in store.list_items(status="in_review") if i.claimed_by == "bob"]
    assert [i.id for i in held] == [1]


def test_undo_walks_back_one_decision_at_a_time_then_says_there_is_nothing_left(served):
    store, url = served
    dana = Client(url, verbose=False)
    first = fields(dana.predict("dana", api_name="/ui_claim_next"))  # item 1
    second = fields(dana.predict("dana", first["draft"], "", "", "", "", "", [], api_name="/ui_approve"))  # item 2
    dana.predict("dana", second["draft"], "", "", "", "", "", [], api_name="/ui_approve")  # shows item 3
    assert "Item **2**" in fields(dana.predict("dana", api_name="/ui_undo"))["status"]
    assert store.get_item(2).status == "in_review" and store.get_item(3).status == "pending"
    assert "Item **1**" in fields(dana.predict("dana", api_name="/ui_undo"))["status"]
    assert store.get_item(1).status == "in_review" and store.get_item(2).status == "pending"
    held = [i.id for i in store.list_items(status="in_review") if i.claimed_by == "dana"]
    assert held == [1]
    with pytest.raises(Exception, match="no action left to undo"):
        dana.predict("dana", api_name="/ui_undo")
    assert store.get_item(1).status == "in_review"


def test_two_reviewers_never_share_an_item_and_stale_saves_are_refused(served):
    store, url = served
    alice, bob = Client(url, verbose=False), Client(url, verbose=False)
    a = fields(alice.predict("alice", api_name="/ui_claim_next"))
    b = fields(bob.predict("bob", api_name="/ui_claim_next"))
    assert a["draft"] != b["draft"]
    # Someone changes alice's item behind her back (e.g. an admin reassigns it).
    item_id = int(a["status"].split("**")[1])
    store.reassign(item_id)
    view = fields(alice.predict("alice", "my edit", "", "", "", "", "", [], api_name="/ui_approve"))
    assert "reloaded" in view["status"]
    assert store.get_item(item_id).status == "pending"  # nothing overwritten


def test_captions_are_text_and_diff_is_word_level():
    assert word_diff("a red hat", "a blue hat") == [("a ", None), ("red ", "-"), ("blue ", "+"), ("hat ", None)]
    assert word_diff("<img src=x onerror=alert(1)>", "<img src=x onerror=alert(1)>") == [
        ("<img src=x onerror=alert(1)> ", None)]


def test_export_tab_offers_parquet_and_zip(served):
    store, url = served
    c = Client(url, verbose=False)
    c.predict("carol", api_name="/ui_claim_next")
    c.predict("carol", "A woman in an orange suit.", "", "", "", "", "", [], api_name="/ui_approve")
    summary, files = c.predict("humancaptionhq", "approved", False, 0.9, api_name="/ui_export")
    assert "1 train" in summary or "1 held-out" in summary
    paths = [f if isinstance(f, str) else f["path"] for f in files]
    assert any(p.endswith(".zip") for p in paths)
    parquet = [p for p in paths if p.endswith(".parquet")]
    table = pq.read_table(parquet[0]).to_pylist()
    assert table[0]["human_caption_hq"][1] == {"from": "gpt", "value": "A woman in an orange suit."}


def test_empty_queue_says_so(served):
    store, url = served
    c = Client(url, verbose=False)
    for _ in range(3):
        c.predict("erin", api_name="/ui_claim_next")
        c.predict("erin", "", "", "", "", "", "", [], api_name="/ui_skip")
    view = fields(c.predict("erin", api_name="/ui_claim_next"))
    assert "Nothing left to review" in view["status"] and view["photo"] is None
    assert store.counts()["skipped"] == 3
    # Skipped items come back on request, and can be claimed again.
    counts = c.predict("erin", api_name="/ui_return_skipped")
    assert "pending: **3**" in counts and store.counts()["skipped"] == 0
    assert "Item **" in fields(c.predict("erin", api_name="/ui_claim_next"))["status"]


def test_reviewer_name_is_required(served):
    """Claiming with no name is a warning that changes nothing (no claim is taken)."""
    store, url = served
    Client(url, verbose=False).predict("  ", api_name="/ui_claim_next")
    assert store.counts().get("in_review", 0) == 0


def test_send_to_review_from_the_caption_tab(served):
    from gradio_client import handle_file

    store, url = served
    c = Client(url, verbose=False)
    photo = handle_file(str(ASTRONAUT.parent / "camera.png"))
    caption, _chat = c.predict(photo, "brief", "", 16, 0.0, 0.9, 1.0, api_name="/ui_caption")
    c.predict(caption, True, "cc0-1.0", api_name="/ui_send_to_review")
    item = store.list_items(status="pending")[-1]
    assert item.draft.caption == caption and item.draft.model_name == "demo"
    assert item.draft.preset == "brief" and item.draft.settings["max_new_tokens"] == 16
    assert item.history == ()
    # The streamed caption's confidence is recorded, the figure batch captioning computes.
    from model.generate import GenerationSettings
    from model.images import load_image
    from model.loader import LoadConfig, load_model
    from model.prompts import PRESETS

    [(text, mean, low)] = load_model(LoadConfig(model="demo")).caption_batch_scored(
        [load_image(ASTRONAUT.parent / "camera.png")], PRESETS["brief"], GenerationSettings(max_new_tokens=16))
    assert text == caption and mean is not None
    assert item.draft.confidence_mean == pytest.approx(mean, abs=1e-3)
    assert item.draft.confidence_min == pytest.approx(low, abs=1e-3)
    # Sending the same photo again does not queue it twice.
    before = store.counts()["pending"]
    c.predict(caption, True, "cc0-1.0", api_name="/ui_send_to_review")
    assert store.counts()["pending"] == before


def test_a_sent_photo_is_stored_bounded_and_without_metadata(served, tmp_path):
    """A visitor's upload is re-encoded before it is stored: capped size, no EXIF/GPS."""
    from gradio_client import handle_file
    from PIL import Image

    store, url = served
    big = Image.open(ASTRONAUT).convert("RGB").resize((3000, 4000))
    exif = Image.Exif()
    exif[0x8825] = {2: (48.0, 51.0, 24.0)}  # GPS latitude
    exif[0x010F] = "PhoneMaker"
    big.save(tmp_path / "big.jpg", exif=exif)
    c = Client(url, verbose=False)
    caption, _ = c.predict(handle_file(str(tmp_path / "big.jpg")), "brief", "", 16, 0.0, 0.9, 1.0, api_name="/ui_caption")
    c.predict(caption, True, "cc0-1.0", api_name="/ui_send_to_review")
    item = store.get_item(store.list_items(status="pending")[-1].id)
    with Image.open(item.image.path) as stored:
        assert stored.format == "JPEG" and max(stored.size) == 2048 and stored.size == (1536, 2048)
        assert not stored.getexif()


def test_send_to_review_keeps_the_users_edit_as_a_revision(served):
    from gradio_client import handle_file

    store, url = served
    c = Client(url, verbose=False)
    photo = handle_file(str(ASTRONAUT.parent / "camera.png"))
    caption, _ = c.predict(photo, "brief", "", 16, 0.0, 0.9, 1.0, api_name="/ui_caption")
    c.predict("A man with a camera on a tripod.", True, "cc-by-4.0", api_name="/ui_send_to_review")
    item = store.get_item(store.list_items(status="pending")[-1].id)
    assert item.draft.caption == caption  # the draft is what the model said
    assert item.caption == "A man with a camera on a tripod."
    assert [r.reviewer for r in item.history] == ["local"]  # the laptop user, in local mode


def test_send_to_review_of_a_hand_typed_caption_says_caption_first(served):
    """A photo uploaded and a caption typed by hand: no model draft, so a clear message."""
    from gradio_client import handle_file

    store, url = served
    c = Client(url, verbose=False)
    c.predict(handle_file(str(ASTRONAUT.parent / "camera.png")), api_name="/ui_clear_chat")
    before = store.counts()
    c.predict("A man with a camera.", True, "cc0-1.0", api_name="/ui_send_to_review")  # a warning
    assert store.counts() == before


def test_send_to_review_needs_consent_and_a_licence_and_records_them(served):
    from gradio_client import handle_file

    store, url = served
    c = Client(url, verbose=False)
    caption, _ = c.predict(handle_file(str(ASTRONAUT)), "brief", "", 16, 0.0, 0.9, 1.0, api_name="/ui_caption")
    before = store.counts()
    c.predict(caption, False, "cc0-1.0", api_name="/ui_send_to_review")  # no consent: a warning, nothing stored
    c.predict(caption, True, None, api_name="/ui_send_to_review")  # no licence: the same
    assert store.counts() == before
    c.predict(caption, True, "cc-by-4.0", api_name="/ui_send_to_review")
    item = store.list_items(status="pending")[-1]
    assert item.image.licence == "cc-by-4.0" and "confirmed by local" in item.image.consent


def test_reviewer_is_the_logged_in_user_when_auth_is_on(tmp_path):
    store = Store(data_dir=tmp_path / "data")
    store.enqueue(ASTRONAUT, draft("A woman."))
    with running_app(store=store, auth=[("frank", "s3cret")]) as url:
        c = Client(url, auth=("frank", "s3cret"), verbose=False)
        c.predict("someone else", api_name="/ui_claim_next")  # the name box is ignored (and hidden)
        c.predict("someone else", "A woman in an orange suit.", "", "", "", "", "", [], api_name="/ui_approve")
        with pytest.raises(Exception):
            Client(url, auth=("frank", "wrong"), verbose=False)
    item = store.get_item(1)
    assert item.decided_by == "frank" and [r.reviewer for r in item.history] == ["frank"]
    store.close()


def test_a_malformed_auth_option_is_a_usage_error(capsys, monkeypatch):
    from app.cli import build_parser

    assert build_parser().parse_args(["serve", "--auth", "ann:pw,bo:x"]).auth == [("ann", "pw"), ("bo", "x")]
    for bad in ("alice", "alice:", ":pw"):
        with pytest.raises(SystemExit) as stop:
            build_parser().parse_args(["serve", "--auth", bad])
        assert stop.value.code == 2 and "user:password" in capsys.readouterr().err
    monkeypatch.setenv("HUMANVLM_AUTH", "carol")  # the environment variable is checked the same way
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve"])


def test_a_refused_approve_keeps_what_the_reviewer_typed(served):
    store, url = served
    c = Client(url, verbose=False)
    c.predict("gina", api_name="/ui_claim_next")
    view = fields(c.predict("gina", "   ", "young", "orange suit", "", "", "", [], api_name="/ui_approve"))
    assert "reloaded" in view["status"]
    assert (view["face"], view["body"]) == ("young", "orange suit")  # nothing typed is lost
    assert store.get_item(1).status == "in_review"

"""Annotation guidelines (set by admins, read beside every item) and comments on items."""

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.conftest import ASTRONAUT, running_app


@pytest.fixture()
def store(tmp_path):
    from annotate.records import Draft
    from annotate.store import Store

    with Store(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "data") as store:
        store.enqueue(ASTRONAUT, Draft("demo", "v1", caption="A woman."))
        yield store


def test_guidelines_and_comments_in_the_store(store):
    from annotate.errors import InvalidInput, ItemNotFound

    assert store.notes.guidelines() == ("", None, None)
    store.notes.set_guidelines("Describe the face first.", "ada")
    store.notes.set_guidelines("Describe the face, then the clothing.", "ada")
    text, by, at = store.notes.guidelines()
    assert (text, by) == ("Describe the face, then the clothing.", "ada") and at is not None
    store.notes.add_comment(1, "rita", "Is that a flag behind her?")
    assert [(c.author, c.text) for c in store.notes.comments(1)] == [("rita", "Is that a flag behind her?")]
    with pytest.raises(InvalidInput, match="empty"):
        store.notes.add_comment(1, "rita", "  ")
    with pytest.raises(InvalidInput, match="the limit is 2,000"):
        store.notes.add_comment(1, "rita", "x" * 2001)
    with pytest.raises(ItemNotFound):
        store.notes.add_comment(99, "rita", "hello")


def test_only_admins_set_guidelines_and_reviewers_comment_on_their_item(store):
    from app.policy import resolve_access

    access = resolve_access("127.0.0.1", auth=True, admins="ada", env={})
    with running_app(store=store, auth=[("ada", "a"), ("rita", "r")], access=access) as url:
        rita = Client(url, auth=("rita", "r"), verbose=False)
        with pytest.raises(AppError, match="Changing settings needs the admin role"):
            rita.predict("Approve everything.", api_name="/ui_guidelines")
        assert store.notes.guidelines()[0] == ""
        ada = Client(url, auth=("ada", "a"), verbose=False)
        shown, _ = ada.predict("Describe the face first. <script>alert(1)</script>", api_name="/ui_guidelines")
        assert "Describe the face first." in shown and "Set by ada" in shown
        rita.predict("", api_name="/ui_claim_next")  # the claimed item stays in the session's state
        rows, cleared = rita.predict("", "Is that a flag?", api_name="/ui_comment")
        assert cleared == "" and rows["data"][-1][1:] == ["rita", "Is that a flag?"]
    assert [e.action for e in store.audit.entries() if e.allowed] == ["settings"]
    assert [c.author for c in store.notes.comments(1)] == ["rita"]

"""Thumbs up / down on an answer in a real headless Chromium: a disliked answer goes into the
review queue as a draft to correct (with the consent and licence the sender gave)."""

import pytest

from tests.browser import browser_page
from tests.conftest import ASTRONAUT, running_app

pytestmark = pytest.mark.browser
IDLE = "() => document.querySelectorAll('.generating, .pending').length === 0"


def test_a_disliked_answer_becomes_a_draft_to_correct(tmp_path):
    from annotate.store import Store

    with Store(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "data") as store, running_app(store=store) as url, \
            browser_page() as page:
        page.goto(url)
        page.locator("#photo input[type=file]").set_input_files(str(ASTRONAUT))
        page.locator("#photo img").first.wait_for(timeout=30_000)
        page.locator("#caption-btn").click()
        page.wait_for_function("() => document.querySelector('#caption-out textarea').value.trim().length > 0",
                               timeout=60_000)
        page.wait_for_function(IDLE, timeout=60_000)
        page.locator("#chat-in textarea").fill("What is she holding?")
        page.locator("#chat-in textarea").press("Enter")
        page.locator("#chatbot").get_by_text("What is she holding?").wait_for(timeout=30_000)
        page.wait_for_function(IDLE, timeout=60_000)
        dislike = page.locator("#chatbot").get_by_role("button", name="Dislike").first
        page.locator("#chatbot .message").last.hover()  # the feedback buttons show on hover
        dislike.click()  # no consent yet: a warning only
        page.locator(".toast-body").get_by_text("consent box").wait_for(timeout=30_000)
        assert store.counts().get("pending", 0) == 0
        page.locator("#consent input[type=checkbox]").check()
        page.locator("#licence input").click()
        page.get_by_role("option", name="cc0-1.0").click()
        page.locator("#chatbot .message").last.hover()
        dislike.click()
        page.locator(".toast-body").get_by_text("Sent to the review queue").wait_for(timeout=30_000)
        item = store.list_items(status="pending")[0]
        shown = page.locator("#chatbot").inner_text()
        assert item.draft.prompt == "What is she holding?" and item.draft.caption in shown
        assert item.draft.confidence_mean is not None  # the model's confidence in that answer
        assert item.image.licence == "cc0-1.0"

"""The Review tab in a real headless Chromium: claim, edit, approve with the keyboard."""

import pytest

from annotate.records import Draft
from annotate.store import Store
from tests.browser import browser_page
from tests.conftest import ASTRONAUT, running_app

pytestmark = pytest.mark.browser
HOSTILE = 'A woman <img src=x onerror="window.__pwned = 1"> in an orange suit.'


@pytest.fixture()
def served(tmp_path):
    store = Store(data_dir=tmp_path / "data")
    store.enqueue(ASTRONAUT, Draft(model_name="demo", model_version="demo-v2", caption=HOSTILE))
    with running_app(store=store) as url:
        yield store, url
    store.close()


def test_claim_edit_approve_with_keyboard(served, artifacts_dir):
    store, url = served
    with browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Review").click()
        page.locator("#queue-counts").get_by_text("pending: 1").wait_for(timeout=10_000)  # before any claim
        page.locator("#reviewer input, #reviewer textarea").first.fill("dana")
        page.keyboard.press("Alt+N")  # claim next
        draft = page.locator("#draft textarea")
        page.wait_for_function("el => el.value.includes('orange suit')", arg=draft.element_handle(), timeout=30_000)
        # The hostile caption is shown as text and never runs.
        assert draft.input_value() == HOSTILE
        assert page.evaluate("window.__pwned") is None
        edit = page.locator("#caption-edit textarea")
        edit.fill("A smiling woman in an orange flight suit.")
        page.locator("#diff").get_by_text("flight").wait_for(timeout=10_000)
        page.screenshot(path=str(artifacts_dir / "review-tab.png"), full_page=True)
        edit.press("Alt+A")  # approve, from inside the caption box
        page.locator("#item-status").get_by_text("Nothing left to review").wait_for(timeout=30_000)
        assert page.evaluate("window.__pwned") is None
    item = store.get_item(1)
    assert item.status == "approved" and item.decided_by == "dana"
    assert item.caption == "A smiling woman in an orange flight suit."

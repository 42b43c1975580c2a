"""The Caption & Chat tab in a real headless Chromium: upload, caption, see text stream in."""

import pytest

from tests.browser import browser_page
from tests.conftest import ASTRONAUT, running_app

pytestmark = pytest.mark.browser
# Nothing streaming or waiting in the queue (Gradio marks such outputs .generating / .pending).
IDLE = "() => document.querySelectorAll('.generating, .pending').length === 0"


@pytest.fixture(scope="module")
def app_url():
    with running_app() as url:
        yield url


def test_upload_caption_and_chat_in_chromium(app_url, artifacts_dir):
    with browser_page() as page:
        page.goto(app_url)
        banner = page.locator("#demo-banner")
        banner.get_by_text("Untrained demo model").wait_for(timeout=30_000)
        page.locator("#photo input[type=file]").set_input_files(str(ASTRONAUT))
        page.locator("#photo img").first.wait_for(timeout=30_000)
        page.locator("#caption-btn").click()
        caption = page.locator("#caption-out textarea")
        page.wait_for_function(
            "el => el.value.trim().length > 20", arg=caption.element_handle(), timeout=60_000)
        assert len(caption.input_value().strip()) > 20
        # The chat shows the photo, and the caption only once: in the Caption box.
        page.locator("#chatbot img").first.wait_for(timeout=30_000)
        page.wait_for_function(IDLE, timeout=60_000)
        assert caption.input_value().strip()[:20] not in page.locator("#chatbot").inner_text()
        # A follow-up question streams into the chatbot.
        page.locator("#chat-in textarea").fill("What is she holding?")
        page.locator("#chat-in textarea").press("Enter")
        page.locator("#chatbot").get_by_text("What is she holding?").wait_for(timeout=30_000)
        page.wait_for_function(
            "() => document.querySelectorAll('#chatbot .bot.message, #chatbot .message.bot').length >= 1",
            timeout=60_000)
        page.screenshot(path=str(artifacts_dir / "caption-tab.png"), full_page=True)
        assert "Traceback" not in page.content()
        # Another photo while an answer is still streaming: the generation stops and the old
        # photo's caption and chat go at once, so nothing stale is shown or sent to review.
        page.wait_for_function(IDLE, timeout=60_000)
        page.get_by_text("Generation settings").click()
        page.locator("#max-new-tokens input[type=number]").fill("1024")
        page.locator("#max-new-tokens input[type=number]").press("Enter")
        page.locator("#chat-in textarea").fill("Describe everything about her, in detail.")
        page.locator("#chat-in textarea").press("Enter")
        page.locator("#chatbot").get_by_text("Describe everything about her").wait_for(timeout=30_000)
        page.locator("#photo input[type=file]").set_input_files(str(ASTRONAUT.parent / "camera.png"))
        page.wait_for_function(
            "el => el.value === '' && !document.querySelector('#chatbot').innerText.includes('Describe everything')",
            arg=caption.element_handle(), timeout=30_000)
        page.locator("#chatbot img").first.wait_for(timeout=30_000)  # the new photo, alone
        # The stopped answer never comes back: a question about the new photo is the only exchange.
        page.locator("#chat-in textarea").fill("Who is this?")
        page.locator("#chat-in textarea").press("Enter")
        page.locator("#chatbot").get_by_text("Who is this?").wait_for(timeout=30_000)
        page.wait_for_function(IDLE, timeout=60_000)
        shown = page.locator("#chatbot").inner_text()
        assert "Who is this?" in shown
        assert "Describe everything" not in shown and "What is she holding" not in shown, shown
        assert page.locator("#caption-out textarea").input_value() == ""


def test_a_broken_photo_is_refused_when_it_is_uploaded(app_url, tmp_path):
    fake = tmp_path / "portrait.jpg"
    fake.write_text("definitely not a photo")
    with browser_page() as page:
        page.goto(app_url)
        page.locator("#demo-banner").get_by_text("Untrained demo model").wait_for(timeout=30_000)
        page.locator("#photo input[type=file]").set_input_files(str(fake))
        page.locator(".toast-body").get_by_text("portrait.jpg").first.wait_for(timeout=30_000)  # the gate's message
        page.wait_for_function("() => document.querySelectorAll('#photo img').length === 0", timeout=30_000)
        page.wait_for_function(IDLE, timeout=30_000)
        assert page.locator("#photo img").count() == 0  # nothing left in the box to caption


def _open_with_a_photo(page, url: str) -> None:
    page.goto(url)
    page.locator("#demo-banner").get_by_text("Untrained demo model").wait_for(timeout=30_000)
    page.locator("#photo input[type=file]").set_input_files(str(ASTRONAUT))
    page.locator("#photo img").first.wait_for(timeout=30_000)


def test_laptop_screen_caption_is_in_view_and_buttons_follow_the_generation(app_url):
    with browser_page(width=1366, height=768) as page:
        _open_with_a_photo(page, app_url)
        box = page.locator("#caption-btn").bounding_box()
        assert box["y"] + box["height"] <= 768, box  # no scrolling to reach the main action
        assert page.locator("#stop-btn").is_disabled() and page.locator("#caption-btn").is_enabled()
        page.get_by_text("Generation settings").click()
        page.locator("#max-new-tokens input[type=number]").fill("1024")
        page.locator("#max-new-tokens input[type=number]").press("Enter")
        # Record every state the two buttons pass through (however short the caption is).
        page.evaluate("""() => {
            window.__seen = [];
            const cap = document.querySelector('#caption-btn'), stop = document.querySelector('#stop-btn');
            const note = () => window.__seen.push([cap.disabled, stop.disabled]);
            new MutationObserver(note).observe(cap, {attributes: true});
            new MutationObserver(note).observe(stop, {attributes: true});
        }""")
        page.locator("#caption-btn").click()
        page.wait_for_function("() => window.__seen.some(([c, s]) => c && !s)", timeout=30_000)  # busy
        page.wait_for_function("() => { const [c, s] = window.__seen.at(-1); return !c && s; }",
                               timeout=60_000)  # idle again when the caption ends
        page.wait_for_function(IDLE, timeout=30_000)
        assert page.locator("#caption-out textarea").input_value().strip()
        assert page.locator("#stop-btn").is_disabled() and page.locator("#caption-btn").is_enabled()


def test_phone_screen_caption_button_is_in_view_after_an_upload(app_url):
    """On a phone (390 x 844) the columns stack: the photo, then its Caption button, unscrolled."""
    with browser_page(width=390, height=844) as page:
        _open_with_a_photo(page, app_url)
        page.evaluate("() => document.querySelector('#photo').scrollIntoView({block: 'start'})")
        photo, button = page.locator("#photo").bounding_box(), page.locator("#caption-btn").bounding_box()
        # Scrolled to the photo (where an upload leaves the user), the button is on the same screen.
        assert button["y"] + button["height"] <= 844 and button["y"] >= photo["y"], (photo, button)

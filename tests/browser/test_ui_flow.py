"""The UI in a real browser (Debian's chromium driven by Playwright) against a live server and a
real worker: sign in, create an album, upload, watch indexing finish, search by image."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.images import noise_png
from tests.tiny_models import OPEN_CLIP_TINY

# The README's pictures are refreshed on purpose (LOUPE_SCREENSHOTS_DIR=docs/screenshots make test), not by
# every run: a run that rewrote them left a clean checkout dirty.
SCREENSHOTS = Path(os.environ.get("LOUPE_SCREENSHOTS_DIR") or Path(tempfile.gettempdir()) / "loupe-screenshots")

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # the live server runs beside Playwright's loop
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


def new_page(browser):
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(30_000)
    return page


@pytest.fixture
def page(browser):
    return new_page(browser)


def open_adjust(page):
    """The search form's settings sit behind "Adjust"."""
    if page.locator("#adjust").get_attribute("open") is None:
        page.locator("#adjust > summary").click()


def sign_in(page, base_url, username):
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"pw-{username}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/")


def shot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_sign_in_upload_index_and_search_by_image(worker, live_server, page, make_user, tmp_path):
    make_user("carol")
    files = []
    for i in range(3):
        path = tmp_path / f"photo-{i}.png"
        path.write_bytes(noise_png(size=(96, 72), seed=40 + i))
        files.append(str(path))
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")

    sign_in(page, live_server.url, "carol")
    page.get_by_label("Name").fill("Browser album")
    page.get_by_role("button", name="Create album").click()
    page.wait_for_url("**/albums/*/")

    page.set_input_files("#files", [*files, str(bad)])
    page.wait_for_selector("#upload-results li.rejected", state="attached")
    summary = page.locator("#upload-summary")
    summary.filter(has_text="3 added").wait_for()
    page.locator("#upload-results li.rejected").wait_for()  # a rejection unfolds the per-file lines
    rejected = page.locator("#upload-results li.rejected").inner_text()
    assert "notes.jpg" in rejected and "rejected — Not an image" in rejected

    # Indexing runs on the worker; the page follows it live and then shows the model search uses.
    page.locator("#search-model").filter(has_text="efficientnet-lite0").wait_for(timeout=90_000, state="attached")
    page.locator("#count-indexed").filter(has_text="3").wait_for(timeout=90_000, state="attached")
    page.locator("#index-chip").filter(has_text="Up to date").wait_for()
    page.wait_for_function("() => document.querySelectorAll('#photo-grid .tile').length === 3")

    page.get_by_role("link", name="Search", exact=True).click()
    # EfficientNet-Lite0 has no text tower: words go to its ImageNet concepts, and the page says so.
    assert page.locator("#text-concepts").is_visible() and page.locator("#text-disabled").count() == 0
    assert page.locator("#q-text").is_enabled()
    page.set_input_files("#q-image", files[1])
    open_adjust(page)
    page.locator("#min-score").fill("-1")
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator("#search-status").filter(has_text="3 results").wait_for()
    first_score = page.locator("#search-results .tile .score").first.inner_text()
    assert first_score == "1.0000"
    shot(page, "search-by-image")

    # A result opens in the viewer; its info panel has "More like this".
    page.locator("#search-results .tile a.open").first.click()
    page.locator(".pswp[data-ready]").wait_for()
    page.keyboard.press("i")
    page.wait_for_function("() => document.querySelectorAll('.pswp-info .strip img').length === 2")
    page.keyboard.press("Escape")
    page.locator(".pswp").wait_for(state="detached")
    # The photo's own page has it too.
    page.goto(live_server.url + page.locator("#search-results .tile a.open").first.get_attribute("href"))
    page.wait_for_selector("#similar .tile")
    assert page.locator("#similar .tile").count() == 2


def test_text_search_sliders_sharing_and_isolation(worker, live_server, browser, make_user, tmp_path):
    from albums import services

    carol, dave = make_user("carol"), make_user("dave")
    make_user("eve")
    album = services.album_create(owner=carol, name="Sleds", encoder_spec=OPEN_CLIP_TINY)
    files = []
    for i in range(3):
        path = tmp_path / f"sled-{i}.png"
        path.write_bytes(noise_png(size=(64, 48), seed=70 + i))
        files.append(str(path))

    page = new_page(browser)
    sign_in(page, live_server.url, "carol")
    shot(page, "albums")
    page.goto(f"{live_server.url}/albums/{album.pk}/")
    page.set_input_files("#files", files)
    page.locator("#upload-summary").filter(has_text="3 added").wait_for()
    # The progress bar follows the job to the end; then the counts say all three are indexed.
    page.locator("#count-indexed").filter(has_text="3").wait_for(timeout=90_000, state="attached")
    assert page.locator("#job-progress").is_hidden()
    shot(page, "album")

    page.goto(f"{live_server.url}/albums/{album.pk}/search/")
    page.locator("#q-text").fill("kids on a red sled")
    open_adjust(page)
    page.locator("#min-score").fill("-1")
    page.set_input_files("#q-image", files[2])
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator("#search-status").filter(has_text="3 results").wait_for()
    before = page.locator("#search-results .tile .score").all_inner_texts()
    assert all(len(score.split(".")[1]) == 4 for score in before)
    assert "text" in page.locator("#search-results .tile").first.get_attribute("title")
    shot(page, "search")
    # Drop the image's weight to zero: the ranking is now by text alone, and the scores change.
    page.locator("#w-image").fill("0")
    assert page.locator("#w-image-out").inner_text() == "0.00"
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_function("(b) => document.querySelector('#search-results .tile .score').textContent !== b", arg=before[0])
    after = page.locator("#search-results .tile .score").all_inner_texts()
    assert after != before and len(after) == 3
    # The words are in the address: a reload (or Back from a photo) searches them again.
    assert "text=kids+on+a+red+sled" in page.url
    page.reload()
    open_adjust(page)
    assert page.locator("#q-text").input_value() == "kids on a red sled"
    page.locator("#search-status").filter(has_text="3 results").wait_for()
    # Pages of results: the next one comes with "Show more" (or by scrolling to it).
    page.evaluate("document.getElementById('search-form').dataset.pageSize = '2'")
    search_url = f"**/api/v1/albums/{album.pk}/search/"
    # The next page comes by itself while the end of the list is on screen (endless scrolling).
    with page.expect_response(lambda r: r.request.method == "POST" and 'name="page"\r\n\r\n2\r\n' in (r.request.post_data or "")):
        page.get_by_role("button", name="Search", exact=True).click()
    page.locator("#search-results[aria-busy=false]").wait_for(state="attached")
    assert page.locator("#search-results .tile").count() == 3
    assert page.locator("#search-more").is_hidden()

    # Two searches in flight, the first answering last: the page keeps the answer to the last one
    # asked (here: nothing at the minimum score, with an offer of what lies below it).
    held = []
    page.route(search_url, lambda route: route.continue_() if held else held.append(route))
    page.locator("#min-score").fill("-1")
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator("#min-score").fill("0.995")
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator("#search-status").filter(has_text="No image scored at least 0.9950").wait_for()
    assert len(held) == 1
    with page.expect_response(lambda r: r.request == held[0].request):
        held[0].continue_()
    page.locator("#search-results[aria-busy=false]").wait_for(state="attached")
    page.unroute(search_url)
    assert page.locator("#search-status").inner_text().startswith("No image scored at least 0.9950")
    assert page.locator("#search-results .tile").count() == 0
    page.locator("#search-lower").click()
    page.locator("#search-status").filter(has_text="3 results").wait_for()

    # Share with dave as a viewer.
    page.goto(f"{live_server.url}/albums/{album.pk}/members/")
    page.locator("#id_username").fill("dave")
    page.locator("#id_role").select_option("viewer")
    page.get_by_role("button", name="Add member").click()
    page.locator("table").filter(has_text="dave").wait_for()
    shot(page, "members")

    viewer = new_page(browser)
    sign_in(viewer, live_server.url, "dave")
    card = viewer.locator(".album-card").filter(has_text="Sleds")
    assert "viewer" in card.inner_text() and "3 photos" in card.inner_text()
    assert card.locator(".cover img").count() == 3  # the cover mosaic: its newest photos
    card.locator(".title").get_by_role("link", name="Sleds").click()
    assert viewer.locator("#photo-grid .tile").count() == 3
    assert viewer.locator("#upload").count() == 0  # viewers cannot upload
    assert viewer.locator("#index-now").count() == 0

    outsider = new_page(browser)
    sign_in(outsider, live_server.url, "eve")
    assert "Sleds" not in outsider.content()
    response = outsider.goto(f"{live_server.url}/albums/{album.pk}/")
    assert response.status == 404
    assert outsider.goto(f"{live_server.url}/albums/{album.pk}/search/").status == 404
    assert dave.pk and carol.pk

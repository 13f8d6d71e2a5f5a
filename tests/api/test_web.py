"""The web page at GET /, served by the real app over real HTTP and driven in headless Chromium.

The browser is Debian's `chromium` (Playwright only drives it; nothing is downloaded); without it the browser
test skips. The screenshot goes to the test's tmp_path and, when set, to $RAG_SCREENSHOT_DIR.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, Request, expect, sync_playwright

from rag_server.config import Settings
from rag_server.embedding import SentenceTransformerEmbedder
from rag_server.routing.model import default_model
from tests.api.conftest import LiveServer, ingest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOMAIN = "web"
QUESTION = "Within how many days are refunds approved?"
# A title the page must show as text, never as markup.
HOSTILE_TITLE = "<b>Bold</b> & <img src=x>"
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def server(
    module_settings: Settings, embedder: SentenceTransformerEmbedder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The app over two domains: 'web' (12 documents, two pages of the browser) and 'other' (one)."""
    root = tmp_path_factory.mktemp("web")
    (root / "refunds.md").write_text("# Refunds\n\nRefunds are approved within 14 days of a request.\n")
    (root / "errors.md").write_text("# ERR-4012\n\nERR-4012 means the API token has expired.\n")
    (root / "hostile.md").write_text(f"# {HOSTILE_TITLE}\n\nA title with markup in it.\n")
    for n in range(9):
        (root / f"note-{n}.txt").write_text(f"Note {n}: the office plant number {n} is watered on day {n}.\n")
    ingest(module_settings, embedder, root, DOMAIN)
    other = tmp_path_factory.mktemp("other")
    (other / "invoices.txt").write_text("Invoices are sent on the first day of each month.\n")
    ingest(module_settings, embedder, other, "other")
    settings = module_settings.model_copy(update={"auth_disabled": True, "default_domain": DOMAIN})
    # The built-in router is trained on first use and cached under the data dir: trained here, on the main
    # thread, so that the page's first question does not wait for it (in a server thread it can take minutes).
    default_model(embedder, settings.data_dir)
    with LiveServer(settings) as live:
        yield live


def url(server: LiveServer, path: str = "/") -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def test_the_page_and_its_assets_are_served_from_this_host(server: LiveServer) -> None:
    page = httpx.get(url(server))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'self' covers scripts
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # Nothing from another host: every src and href is relative (or the empty favicon).
    for link in re.findall(r'(?:src|href)="([^"]*)"', page.text):
        assert not re.match(r"[a-z]+://|//", link), link
    script = httpx.get(url(server, "/static/app.js"))
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text  # data goes into the page as text only
    assert httpx.get(url(server, "/static/style.css")).headers["content-type"].startswith("text/css")
    missing = httpx.get(url(server, "/static/index.py"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert httpx.get(url(server, "/static/..%2Fapp.py")).status_code == 404
    paths = httpx.get(url(server, "/openapi.json")).json()["paths"]
    assert "/" not in paths and not any(path.startswith("/static") for path in paths)


def _has_feedback(server: LiveServer) -> bool:
    return "/v1/feedback" in httpx.get(url(server, "/openapi.json")).json()["paths"]


@pytest.mark.slow
def test_ask_cite_browse_and_give_feedback_in_a_browser(
    server: LiveServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium chromium-driver)")
    console: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("console", lambda message: message.type == "error" and console.append(message.text))
            page.on("pageerror", lambda error: console.append(f"page error: {error}"))
            page.goto(url(server))
            _browse(page)
            request_id = _ask_and_cite(page)
            _feedback(page, request_id, _has_feedback(server), console)
            assert console == [], console
            _screenshot(page, tmp_path)
            _errors_shown(page, console)
        finally:
            browser.close()


def _browse(page: Page) -> None:
    """Domains in a select; a domain's documents ten at a time; titles as text."""
    page.wait_for_selector(f"#domain option[value={DOMAIN}]", state="attached")
    assert page.locator("#domain option").all_inner_texts() == ["other", "web"]
    page.select_option("#domain", DOMAIN)
    expect(page.locator("#page")).to_have_text("1–10 of 12")
    assert page.locator("#documents tbody tr").count() == 10
    assert page.locator("#prev").is_disabled()
    page.click("#next")
    expect(page.locator("#page")).to_have_text("11–12 of 12")
    assert page.locator("#documents tbody tr").count() == 2 and page.locator("#next").is_disabled()
    page.click("#prev")
    expect(page.locator("#page")).to_have_text("1–10 of 12")
    assert HOSTILE_TITLE in page.locator("#documents tbody").inner_text()
    assert page.locator("#documents b, #documents img").count() == 0
    # The key is saved for the next visit and sent as a bearer token.
    page.fill("#api-key", "rk_test_key")
    page.press("#api-key", "Tab")
    assert page.evaluate("() => localStorage.getItem('rag-server.api-key')") == "rk_test_key"
    page.reload()
    assert page.input_value("#api-key") == "rk_test_key"
    expect(page.locator("#domain")).to_have_value(DOMAIN)


def _ask_and_cite(page: Page) -> str:
    """Ask; the answer streams in with its citations, route, timings and cost; a citation opens its passage."""
    tokens = page.evaluate_handle(
        """() => { const seen = [];
            new MutationObserver(() => seen.push(document.getElementById('answer').textContent))
              .observe(document.getElementById('answer'), {childList: true, subtree: true, characterData: true});
            return seen; }"""
    )
    page.fill("#question", QUESTION)
    with page.expect_request(lambda r: r.url.endswith("/v1/ask")) as asked:
        page.click("#ask-button")
    sent: Request = asked.value
    assert sent.post_data_json == {"question": QUESTION, "domain": DOMAIN, "stream": True}
    assert sent.headers["authorization"] == "Bearer rk_test_key"
    page.wait_for_selector("#result[data-state=done]")
    response = sent.response()
    assert response is not None and response.headers["content-type"].startswith("text/event-stream")
    assert page.locator("#error").is_hidden()
    answer = page.inner_text("#answer")
    assert "14 days" in answer and page.locator("#answer .cite").count() >= 1
    assert any(text and text in answer for text in tokens.json_value())  # grew in the page as it came
    assert page.locator("#citations li").count() >= 1
    assert page.inner_text("#fact-route") in {"keyword", "semantic", "hybrid"}
    assert page.inner_text("#fact-decided-by")
    assert re.fullmatch(r"[01]\.\d\d", page.inner_text("#fact-confidence"))
    assert page.inner_text("#fact-cache") == "miss" and page.inner_text("#fact-reranker")
    assert re.fullmatch(r"\$\d+\.\d{6}", page.inner_text("#fact-cost"))
    stages = page.locator("#timings th").all_inner_texts()
    assert {"embed", "rerank", "assess"} <= set(stages), stages
    assert page.locator("#passage").is_hidden()
    page.locator("#answer .cite").first.click()
    assert page.locator("#passage").is_visible()
    assert "Refunds are approved within 14 days" in page.inner_text("#passage-text")
    assert page.inner_text("#passage-title").startswith("[1] ")
    assert re.search(r"supported by the passage \(support [01]\.\d\d\)", page.inner_text("#passage-support"))
    page.locator("#citations .cite").first.click()
    assert page.locator("#citations .cite.active").count() == 1
    return response.headers["x-request-id"]


def _feedback(page: Page, request_id: str, endpoint: bool, console: list[str]) -> None:
    """Thumbs up with a comment: a well-formed POST /v1/feedback, and thanks (or the API's error)."""
    assert page.locator("#feedback").is_visible()
    page.fill("#comment", "Clear & short <ok>")
    with page.expect_request(lambda r: r.url.endswith("/v1/feedback")) as posted:
        page.click("#helpful")
    body = {
        "request_id": request_id,
        "helpful": True,
        "comment": "Clear & short <ok>",
        "correct_evidence": None,
    }
    assert posted.value.method == "POST" and posted.value.post_data_json == body
    assert posted.value.headers["authorization"] == "Bearer rk_test_key"
    if endpoint:
        page.wait_for_selector("#feedback-status.ok")
        assert page.inner_text("#feedback-status") == "Thanks for your feedback."
        assert page.locator("#helpful").is_disabled()
    else:  # before POST /v1/feedback lands: the page says what the server answered
        page.wait_for_selector("#feedback-status.error")
        assert page.inner_text("#feedback-status").startswith("404: ")
        # The browser logs the failed load; nothing else may have been logged.
        console[:] = [text for text in console if "404" not in text]


def _screenshot(page: Page, tmp_path: Path) -> None:
    shot = tmp_path / "web.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
    if os.environ.get("RAG_SCREENSHOT_DIR"):
        target = Path(os.environ["RAG_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / "web.png")


def _errors_shown(page: Page, console: list[str]) -> None:
    """A request the API refuses shows the message of its error body (the browser logs the failed load)."""
    page.fill("#question", "x" * 4001)
    page.click("#ask-button")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error").startswith("422: ")
    assert page.locator("#result").get_attribute("data-state") == "error"
    assert all("Failed to load resource" in text for text in console), console

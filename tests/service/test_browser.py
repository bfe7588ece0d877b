"""The web page in headless Chromium (Debian's ``chromium``, driven by Playwright): upload a video,
draw a box with the mouse, start, wait for the result, play the overlay, download every file.

Skipped where ``/usr/bin/chromium`` or Playwright is missing, except under CI (``CI=true``),
where it must run. ``SAMURAI_UPDATE_DOCS=1`` also copies the screenshot to ``docs/service.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from service.helpers import JOB_TIMEOUT_S, ServerProcess

pytestmark = pytest.mark.xdist_group("service")

CHROMIUM = Path("/usr/bin/chromium")
REPO_ROOT = Path(__file__).resolve().parents[2]


def _browser_or_skip() -> Any:
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install playwright)"
    if missing is None and not CHROMIUM.is_file():
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    if missing is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser test required under CI: {missing}")
        pytest.skip(missing)
    return sync_playwright


@pytest.fixture
def page(tmp_path: Path) -> Any:
    sync_playwright = _browser_or_skip()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"],
        )  # fmt: skip
        context = browser.new_context(viewport={"width": 1200, "height": 1700})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.errors = errors
        try:
            yield page
        finally:
            context.close()
            browser.close()


def sign_in(page: Any, server: ServerProcess) -> None:
    """The page asks for the token once (the server answered 401); a wrong one is refused."""
    page.wait_for_selector("#login", state="visible")
    page.fill("#token", "wrong-token-0123456789")
    page.click("#login-submit")
    page.wait_for_function("document.getElementById('login-error').textContent.includes('refused')")
    page.fill("#token", server.token)
    page.click("#login-submit")
    page.wait_for_selector("#login", state="hidden")
    page.wait_for_selector("#model option", state="attached")


def test_upload_draw_track_play_download(
    page: Any, server: ServerProcess, clips: dict[str, Path], tmp_path: Path
) -> None:
    page.goto(server.url + "/")
    sign_in(page, server)
    assert page.locator("#start").is_disabled()
    page.set_input_files("#video-file", str(clips["short"]))
    page.wait_for_function("document.getElementById('video-info').textContent.includes('4 frames')")
    page.wait_for_selector("#canvas-placeholder", state="hidden")

    canvas = page.locator("#frame-canvas").bounding_box()
    scale = canvas["width"] / 960  # the canvas shows the 960x540 frame scaled to fit
    x0, y0 = canvas["x"] + 300 * scale, canvas["y"] + 100 * scale
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 100 * scale, y0 + 120 * scale, steps=5)
    page.mouse.move(x0 + 200 * scale, y0 + 250 * scale, steps=5)
    page.mouse.up()
    assert page.locator("#object-list li").count() == 1
    box_text = page.locator("#object-list li").first.inner_text()
    assert "x=300" in box_text or "x=299" in box_text or "x=301" in box_text, box_text
    assert page.locator("#start").is_enabled()

    page.click("#start")
    page.wait_for_selector("#progress-box", state="visible")
    page.wait_for_selector("#step-result", state="visible", timeout=JOB_TIMEOUT_S * 1000)
    assert "Done" in page.locator("#job-status").inner_text()
    assert page.evaluate("document.getElementById('job-progress').value") == 1

    page.wait_for_function(
        "() => { const v = document.getElementById('result-video');"
        " return v.error !== null || v.readyState >= 2; }",
        timeout=60_000,
    )
    video = page.evaluate(
        "() => { const v = document.getElementById('result-video');"
        " return {error: v.error && v.error.code, ready: v.readyState, duration: v.duration,"
        " width: v.videoWidth}; }"
    )
    assert video["error"] is None and video["ready"] >= 2, video
    assert video["duration"] > 0 and video["width"] == 960, video
    played = page.evaluate(
        "async () => { const v = document.getElementById('result-video');"
        " await v.play(); await new Promise(r => setTimeout(r, 300));"
        " return v.currentTime; }"
    )
    assert played > 0

    links = page.locator("a.download")
    kinds = sorted(links.nth(i).get_attribute("data-kind") for i in range(links.count()))
    assert kinds == ["boxes", "masks", "overlay", "rle", "scores"]
    for i in range(links.count()):
        href = links.nth(i).get_attribute("href")
        response = page.request.get(server.url + href)
        assert response.status == 200, href
        assert len(response.body()) > 0
    page.wait_for_function(
        "document.querySelector('#jobs tbody .state-done') !== null", timeout=10_000
    )
    assert not page.errors, page.errors

    page.evaluate("document.getElementById('result-video').pause()")
    screenshot = tmp_path / "service.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("SAMURAI_UPDATE_DOCS") == "1":
        (REPO_ROOT / "docs").mkdir(exist_ok=True)
        shutil.copy(screenshot, REPO_ROOT / "docs" / "service.png")


def test_previous_video_and_points(
    page: Any, server: ServerProcess, clips: dict[str, Path]
) -> None:
    """Pick an earlier upload from the list and mark the object with clicks instead of a box."""
    import httpx

    with open(clips["short"], "rb") as f:
        video = httpx.post(
            server.url + "/api/videos",
            files={"video": ("earlier.mp4", f)},
            headers=server.headers,
            timeout=60,
        ).json()
    page.goto(server.url + "/")
    sign_in(page, server)
    page.wait_for_selector(f"#previous-videos option[value='{video['id']}']", state="attached")
    page.select_option("#previous-videos", video["id"])
    page.wait_for_selector("#canvas-placeholder", state="hidden")
    page.check("input[name='mode'][value='points']")
    canvas = page.locator("#frame-canvas").bounding_box()
    page.mouse.click(canvas["x"] + canvas["width"] * 0.4, canvas["y"] + canvas["height"] * 0.4)
    page.keyboard.down("Shift")
    page.mouse.click(canvas["x"] + 5, canvas["y"] + 5)
    page.keyboard.up("Shift")
    assert "1 point(s) on it, 1 on the background" in page.locator("#object-list").inner_text()
    page.select_option("#tracker", "dam4sam")
    with page.expect_response("**/api/jobs") as response_info:
        page.click("#start")
    response = response_info.value
    assert response.status == 201
    job_id = response.json()["id"]
    job = httpx.get(f"{server.url}/api/jobs/{job_id}", headers=server.headers, timeout=30).json()
    assert job["params"]["labels"] == [1, 0]
    assert job["params"]["tracker"] == "dam4sam" and job["params"]["samurai_mode"] is False
    httpx.delete(f"{server.url}/api/jobs/{job_id}", headers=server.headers, timeout=30)
    assert not page.errors, page.errors

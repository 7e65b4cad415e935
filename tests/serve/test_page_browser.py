"""The page in headless Chromium (Debian's /usr/bin/chromium driven by playwright-python):
generate with the progress bar reaching 100%, download, inpaint with a mask drawn on the
canvas, cancel, and replay of a PNG dropped on the page. Skips when the browser or playwright
is missing (scripts/bootstrap.sh installs both where it can)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

CHROMIUM = os.environ.get("GENIMAGE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def server():
    import uvicorn

    from genimage.serve.app import create_app
    from genimage.serve.guard import AccessPolicy
    from genimage.serve.limits import Limits
    from genimage.serve.studio import Studio

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    studio = Studio("digits", "cpu", limits=Limits(max_images=4, max_steps=5000, max_nfe=5000))
    app = create_app(studio, AccessPolicy.for_bind("127.0.0.1", port))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    t0 = time.time()
    while not srv.started:
        assert time.time() - t0 < 30
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    app.state.jobs.close()
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; scripts/bootstrap.sh does it as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright-python is not installed (pip install playwright; no `playwright install` needed)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
                              args=ARGS, headless=True)
        yield b
        b.close()


def _record(page, k=0) -> dict:
    return json.loads(page.locator("#gallery img").nth(k).get_attribute("title"))


def test_generate_progress_download_inpaint_cancel_replay(server, browser, tmp_path):
    from genimage.provenance.record import read_record

    page = browser.new_page(accept_downloads=True)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.wait_for_selector("#model option[value=digits]", state="attached")
    page.select_option("#model", "digits")
    page.fill("#prompt", "3")
    page.fill("#n", "2")
    page.fill("#steps", "300")
    page.evaluate("""() => { window.seen = [];
        new MutationObserver(() => window.seen.push(document.getElementById('pct').textContent))
          .observe(document.getElementById('pct'), {childList: true, characterData: true, subtree: true}); }""")
    page.click("#go")
    page.wait_for_function("() => document.getElementById('pct').textContent === '100%' && "
                           "document.querySelectorAll('#gallery img').length === 2", timeout=60_000)
    seen = page.evaluate("() => window.seen")
    assert any(v not in ("0%", "100%") for v in seen), seen  # it moved through the steps
    assert page.eval_on_selector("#bar", "b => b.value") == 1
    assert _record(page)["label"] == 3 and _record(page, 1)["seed"] == 1

    with page.expect_download() as dl:
        page.locator("#gallery a.download").first.click()
    source = tmp_path / "source.png"
    dl.value.save_as(source)
    assert read_record(source).steps == 300

    # inpaint: upload the download, draw over its right half, edit
    page.set_input_files("#image", str(source))
    page.wait_for_function("() => document.getElementById('maskcanvas').width === 8")
    page.fill("#steps", "20")
    page.fill("#n", "1")
    page.fill("#prompt", "7")
    box = page.locator("#maskcanvas").bounding_box()
    for col in (4.5, 5.5, 6.5, 7.5):  # image columns 4..7 of 8, with a 2 px brush
        x = box["x"] + box["width"] * col / 8
        page.mouse.move(x, box["y"] + 2)
        page.mouse.down()
        page.mouse.move(x, box["y"] + box["height"] - 2, steps=8)
        page.mouse.up()
    page.evaluate("() => { document.getElementById('gallery').replaceChildren(); }")
    page.click("#edit")
    page.wait_for_function("() => document.getElementById('pct').textContent === '100%' && "
                           "document.querySelectorAll('#gallery img').length === 1", timeout=60_000)
    assert _record(page)["edit"]["mode"] == "inpaint"
    with page.expect_download() as dl:
        page.locator("#gallery a.download").first.click()
    edited = tmp_path / "edited.png"
    dl.value.save_as(edited)
    before, after = np.asarray(Image.open(source)), np.asarray(Image.open(edited))
    assert np.array_equal(before[:, :3], after[:, :3])  # columns the mask did not touch are kept exactly
    assert not np.array_equal(before[:, 4:], after[:, 4:])

    # cancel a long job
    page.fill("#steps", "4000")
    page.click("#go")
    page.wait_for_function("() => document.getElementById('status').textContent.startsWith('step')", timeout=30_000)
    page.click("#cancel")
    page.wait_for_function("() => document.getElementById('status').textContent.startsWith('cancelled')", timeout=30_000)

    # replay a dropped PNG
    page.evaluate("() => { document.getElementById('gallery').replaceChildren(); }")
    page.set_input_files("#replayfile", str(source))
    page.wait_for_selector(".match", timeout=60_000)
    assert page.locator(".match").text_content() == "replay matches bit for bit"

    # server text never becomes HTML
    page.fill("#steps", "2")
    page.fill("#prompt", "<img src=x onerror=\"window.__xss=1\">")
    page.evaluate("() => { document.getElementById('status').className = ''; }")
    page.click("#go")
    page.wait_for_function("() => document.getElementById('status').className === 'error'", timeout=30_000)
    assert page.evaluate("() => window.__xss") is None and page.locator("#status img").count() == 0
    assert not errors, errors

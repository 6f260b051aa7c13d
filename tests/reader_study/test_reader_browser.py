"""End to end in a real headless Chromium: open a rater link, rate with the keyboard, check the DB."""

import os
from pathlib import Path

import pytest
from rs_support import build_study, chromium, live_server  # noqa: F401 - fixtures
from sqlalchemy import select
from sqlalchemy.orm import Session

from uterosynth.reader_study import models
from uterosynth.reader_study.main import create_app
from uterosynth.reader_study.settings import Settings

try:
    from playwright.sync_api import expect
except ImportError:  # the chromium fixture then skips locally and fails in CI
    expect = None

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _stored(app, rater: str) -> list[tuple]:
    with Session(app.state.engine) as s:
        rows = s.execute(
            select(models.Assignment.position, models.Rating.choice, models.Rating.confidence,
                   models.Rating.realism, models.Rating.comment, models.Rating.seconds)
            .join(models.Rating, models.Rating.assignment_id == models.Assignment.id)
            .join(models.Rater, models.Rater.id == models.Rating.rater_id)
            .where(models.Rater.name == rater).order_by(models.Assignment.position)
        ).all()
    return [tuple(r) for r in rows]


def _displays(app, rater: str) -> list:
    with Session(app.state.engine) as s:
        return list(s.scalars(
            select(models.Rating.display).join(models.Assignment, models.Rating.assignment_id == models.Assignment.id)
            .join(models.Rater, models.Rater.id == models.Rating.rater_id)
            .where(models.Rater.name == rater).order_by(models.Assignment.position)))


# JS: the canvas pixel and the served PNG's pixel at the image centre
_PIXELS = """() => {
  const img = document.getElementById('image'), c = document.getElementById('canvas');
  const off = document.createElement('canvas'); off.width = img.naturalWidth; off.height = img.naturalHeight;
  const o = off.getContext('2d'); o.drawImage(img, 0, 0);
  const x = img.naturalWidth >> 1, y = img.naturalHeight >> 1;
  return [o.getImageData(x, y, 1, 1).data[0], c.getContext('2d').getImageData(x, y, 1, 1).data[0]];
}"""


def _shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path))
    extra = os.environ.get("UTEROSYNTH_SCREENSHOT_DIR")
    if extra:
        page.screenshot(path=str(Path(extra) / name))
    return path


def test_rate_with_keyboard_resume_and_admin(tmp_path, chromium):  # noqa: F811
    study = build_study(tmp_path, per_source=4, raters=["alice", "bob"], seed=3)
    app = create_app(Settings(study_dir=study.root, db_url=f"sqlite:///{tmp_path / 'e2e.sqlite'}"))
    with live_server(app) as base:
        page = chromium.new_page(viewport={"width": 1280, "height": 760})
        outside = []
        page.on("request", lambda req: None if req.url.startswith(base) or req.url.startswith("blob:")
                else outside.append(req.url))
        page.goto(f"{base}/rate#t={study.tokens['alice']}")
        page.wait_for_selector("#rate-main:not([hidden])")
        expect(page.locator("#image")).to_have_js_property("naturalWidth", 32)
        assert "#t=" not in page.url  # the token leaves the address bar
        assert page.inner_text("#progress-text") == "0 / 8"
        assert page.inner_text("#who") == "alice"

        # image 1: synthetic, confidence 4, realism 2; window/level and zoom changed; Enter
        for key in ["s", "4", "2"]:
            page.keyboard.press(key)
        assert page.get_attribute("#choice-synthetic", "aria-pressed") == "true"
        raw, shown = page.evaluate(_PIXELS)
        assert raw == shown  # the default window shows the image as rendered
        page.keyboard.press("w")  # preset "soft tissue": level 110, width 160
        box = page.locator("#canvas").bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx + 20, cy - 10)  # right: window 40 wider; up: level 10 lower
        page.mouse.up()
        page.keyboard.press("+")
        expect(page.locator("#view-state")).to_have_text("L 100 · W 200 · 125 %")
        raw, shown = page.evaluate(_PIXELS)
        assert shown == max(0, min(255, round((raw - 0) / 200 * 255)))  # level 100 ± 100 → 0..255
        _shot(page, tmp_path, "reader_study_rater.png")
        page.keyboard.press("Enter")
        expect(page.locator("#progress-text")).to_have_text("1 / 8")

        # image 2: real, realism chosen first with V, then confidence with C, a comment, Ctrl+Enter
        expect(page.locator("#image")).to_have_js_property("naturalWidth", 32)
        for key in ["r", "v", "5", "c", "1", "n"]:
            page.keyboard.press(key)
        page.keyboard.type("sharp edges, looks real")
        page.keyboard.press("Control+Enter")
        expect(page.locator("#progress-text")).to_have_text("2 / 8")

        # image 3: incomplete answers cannot be saved
        page.keyboard.press("s")
        page.keyboard.press("Enter")
        page.wait_for_timeout(300)
        assert page.inner_text("#progress-text") == "2 / 8"
        assert page.is_disabled("#submit")

        assert _displays(app, "alice") == [
            {"window_center": 100, "window_width": 200, "zoom": 1.25, "pan_x": 0, "pan_y": 0},
            {"window_center": 127.5, "window_width": 255, "zoom": 1, "pan_x": 0, "pan_y": 0},  # reset per image
        ]
        stored = _stored(app, "alice")
        assert [r[:5] for r in stored] == [(0, "synthetic", 4, 2, None), (1, "real", 1, 5, "sharp edges, looks real")]
        assert all(r[5] is not None and r[5] >= 0 for r in stored)

        # resume: reopening the page (token kept for the tab) continues at image 3
        page.goto(f"{base}/rate")
        page.wait_for_selector("#rate-main:not([hidden])")
        assert page.inner_text("#item-heading") == "Image 3 of 8"

        # admin page: progress per rater, then close; the rater then sees the study closed
        admin = chromium.new_page(viewport={"width": 1280, "height": 620})
        admin.goto(f"{base}/admin#t={study.admin}")
        admin.wait_for_selector("#dashboard:not([hidden])")
        rows = admin.locator("#rater-rows tr")
        assert rows.count() == 2 and "2 / 8" in rows.nth(0).inner_text() and "0 / 8" in rows.nth(1).inner_text()
        _shot(admin, tmp_path, "reader_study_admin.png")
        admin.on("dialog", lambda d: d.accept())
        admin.click("#close-study")
        expect(admin.locator("#stat-state")).to_have_text("closed")
        page.reload()
        page.wait_for_selector("#message:not([hidden])")
        assert "closed" in page.inner_text("#message-title")
        assert outside == []  # no CDN or other outside request: works offline
    app.state.engine.dispose()


def test_bad_link_shows_a_clear_message(tmp_path, chromium):  # noqa: F811
    study = build_study(tmp_path, dims=3, per_source=2, raters=["alice"])
    app = create_app(Settings(study_dir=study.root, db_url=f"sqlite:///{tmp_path / 'e2e3d.sqlite'}"))
    with live_server(app) as base:
        page = chromium.new_page()
        page.goto(f"{base}/rate#t=not-a-valid-token")
        page.wait_for_selector("#message:not([hidden])")
        assert "not recognised" in page.inner_text("#message-title")
        # a volume is a scrollable slice stack
        page.close()
        page = chromium.new_page()
        page.goto(f"{base}/rate#t={study.tokens['alice']}")
        page.wait_for_selector("#stack-controls:not([hidden])")
        assert page.inner_text("#slice-label") == "slice 3 / 4"
        page.keyboard.press("ArrowDown")
        assert page.inner_text("#slice-label") == "slice 4 / 4"
        page.keyboard.press("ArrowUp")
        page.keyboard.press("ArrowUp")
        assert page.inner_text("#slice-label") == "slice 2 / 4"
    app.state.engine.dispose()

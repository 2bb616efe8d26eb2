"""A real browser opens the monitor report from disk: headless Chromium (Debian's), no
network, no console error, the verdict on screen, a hostile column name inert.

`python -m tests.integration.test_report_browser REPORT.html docs/report.png` takes the
README's screenshot with the same browser settings."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlcycle import config
from mlcycle.monitoring import report

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """Debian's Chromium, installed when missing: this test must not skip."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        subprocess.run(
            ["bash", str(config.PROJECT_ROOT / "scripts" / "system-deps.sh")], check=True
        )
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


class Visit:
    """What a page did while it loaded: requests off disk, console errors, dialogs."""

    def __init__(self):
        self.network, self.errors, self.dialogs = [], [], []


def open_page(browser, html: Path, visit: Visit, width: int = 1200, height: int = 900):
    context = browser.new_context(
        viewport={"width": width, "height": height}, offline=True, device_scale_factor=1
    )

    def route(request_route):
        url = request_route.request.url
        if url.startswith(("file://", "data:")):
            request_route.continue_()
        else:
            visit.network.append(url)
            request_route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: visit.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: visit.errors.append(str(e)))

    def dialog(d):
        visit.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    page.goto(html.resolve().as_uri(), wait_until="load")
    page.wait_for_timeout(300)  # let late scripts (Evidently's) report errors
    return page


def screenshot(html: Path, png: Path, height: int = 1150) -> Visit:
    """The top of the report (verdicts, drift table) as a PNG."""
    from playwright.sync_api import sync_playwright

    visit = Visit()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=ARGS)
        try:
            page = open_page(browser, html, visit, height=height)
            page.screenshot(path=str(png))
        finally:
            browser.close()
    return visit


def test_report_opens_offline_with_the_verdict_on_screen_and_no_errors(tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.unit.monitoring.test_report import HOSTILE, sample_context

    context, result = sample_context("regression")
    folder = report.report_folder(tmp_path, "m", "20260101T000000Z")
    paths = report.write_report(folder, context, result.snapshot)
    png = tmp_path / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=ARGS)
        try:
            visit = Visit()
            page = open_page(browser, paths["report"], visit)
            assert page.locator("#drift-verdict").inner_text().startswith("Data drift: YES")
            assert "promoted" in page.locator("#promotion-verdict").inner_text().lower()
            box = page.locator("#verdict").bounding_box()  # in the screenshot below
            assert box["y"] >= 0 and box["y"] + box["height"] <= 900
            # The hostile column is shown as text, and ran nothing.
            assert HOSTILE in page.locator("#drift-table").inner_text()
            assert page.locator("#drift-table script").count() == 0
            images = page.locator("img")
            assert images.count() == 4
            assert all(
                images.nth(i).evaluate("i => i.complete && i.naturalWidth > 100")
                for i in range(images.count())
            )
            page.screenshot(path=str(png))
            assert (visit.network, visit.errors, visit.dialogs) == ([], [], [])

            for other in (paths["latest"], paths["evidently"]):
                visit = Visit()
                page = open_page(browser, other, visit)
                assert (visit.network, visit.errors, visit.dialogs) == ([], [], []), other
            # latest.html links into the newest folder, Evidently's page included.
            page = open_page(browser, paths["latest"], Visit())
            href = page.locator("a", has_text="Evidently's full report").get_attribute("href")
            assert (paths["latest"].parent / href).resolve() == paths["evidently"]
        finally:
            browser.close()
    _assert_not_blank(png)


def _assert_not_blank(png: Path) -> None:
    import matplotlib.image

    pixels = matplotlib.image.imread(str(png))
    assert pixels.shape[0] >= 800 and pixels.shape[1] >= 1100
    assert png.stat().st_size > 20_000
    assert pixels[..., :3].std() > 0.05  # text, badges and borders, not a blank page


if __name__ == "__main__":
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    seen = screenshot(source, target)
    print(f"{target}: {target.stat().st_size} bytes; requests {seen.network}, errors {seen.errors}")

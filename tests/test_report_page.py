"""The HTML report as a person sees it, in a real headless Chromium: Chinese headers, names
instead of ids, and a page that fits a 1400 px screen and an A4 landscape sheet. Writes
screenshots (see tests/browser.py) for a person to look at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from outage_sentinel.report_view import cjk_font, write_report
from outage_sentinel.reports import build_report, day_period
from outage_sentinel.store import Store
from tests.browser import screenshot_dir
from tests.conftest import build_grid
from tests.test_reports import NOW, TZ, L, populate

A4_LANDSCAPE_PX = 1123  # 297 mm at 96 px per inch


def test_html_report_in_chromium_has_chinese_headers_and_fits_1400px(
        sqlite_store: Store, tmp_path: Path, browser: Any) -> None:  # noqa: F811
    populate(sqlite_store)
    report = build_report(sqlite_store, build_grid(), *day_period(L(2, 0).date(), TZ), TZ, NOW)
    (path,) = write_report(report, "html", tmp_path / "daily.html")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(path.as_uri())
        headers = page.locator("th").all_inner_texts()
        assert {"编号", "线路", "停电时户数", "AIHC-1（小时/户）", "抢修班组"} <= set(headers)
        assert not any("_" in h for h in headers)  # no snake_case left for people
        assert page.locator("h1").inner_text() == "停电报告 2026-03-02"
        body = page.locator("body").inner_text()
        assert "马集I线" in body and "马集抢修班" in body and "故障停电" in body
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1400, f"the page is {width} px wide"
        page.screenshot(path=str(screenshot_dir() / "report_1400.png"), full_page=True)
        page.set_viewport_size({"width": A4_LANDSCAPE_PX, "height": 794})
        page.emulate_media(media="print")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= A4_LANDSCAPE_PX, f"printed on A4 landscape the page is {width} px wide"
        page.pdf(path=str(screenshot_dir() / "report_a4.pdf"), format="A4", landscape=True)
        if cjk_font() is not None:  # Chinese chart labels need a CJK font on the server
            assert "本机未安装中文字体" not in body
    finally:
        page.close()

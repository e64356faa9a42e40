"""The devserver's live tail page, driven in a real headless Chromium (tests/_cdp.py).

Without Chromium these tests skip, unless ``LOGDNA_REQUIRE_BROWSER`` is set
(``.ci/run`` sets it after installing Chromium): in CI they always run.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from logdna_client.devserver import DevServer
from tests._cdp import Browser, BrowserError, Page, browser, find_browser

REPO_ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = REPO_ROOT / "docs" / "devserver-page.png"
TIMEOUT = 20.0  # generous: the suite runs on a loaded 2-core machine
ROWS = "#lines .row"
SHOWN = "#lines .row:not([hidden])"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One headless Chromium for the module; each test opens its own tab."""
    if find_browser() is None:
        if os.environ.get("LOGDNA_REQUIRE_BROWSER"):
            pytest.fail("LOGDNA_REQUIRE_BROWSER is set but no Chromium is installed")
        pytest.skip("no Chromium installed (apt-get install chromium)")
    with browser(TIMEOUT) as started:
        yield started


@pytest.fixture
def page(chromium: Browser, server: DevServer) -> Iterator[Page]:
    """The live tail page, loaded and subscribed to the server's event stream."""
    tab = chromium.new_page()
    try:
        tab.navigate(server.page_url)
        assert server.wait_for_page_clients(1, TIMEOUT)
        tab.wait_for("document.body.dataset.state === 'live'")
        yield tab
    finally:
        tab.close()


def post(
    server: DevServer, lines: list[dict[str, Any]], params: dict[str, str] | None = None
) -> None:
    response = requests.post(
        server.url,
        params=params or {"hostname": "web-1"},
        data=orjson.dumps({"lines": lines}),
        timeout=TIMEOUT,
    )
    assert 200 == response.status_code


def count(page: Page, selector: str) -> int:
    return int(page.evaluate(f"document.querySelectorAll({selector!r}).length"))


def texts(page: Page, selector: str = SHOWN) -> list[str]:
    script = (
        f"Array.from(document.querySelectorAll({selector!r}),"
        " r => r.querySelector('.text').textContent)"
    )
    return list(page.evaluate(script))


def wait_received(page: Page, n: int) -> None:
    """Wait until the page has taken ``n`` lines in (shown or filtered out)."""
    page.wait_for(f"document.getElementById('status').textContent.includes(' {n} lines received')")


def click(page: Page, selector: str) -> None:
    page.evaluate(f"document.querySelector({selector!r}).click()")


LINES = [
    {"line": "user ada logged in", "level": "INFO", "app": "shop", "meta": {"user_id": 42}},
    {"line": "cache warmed", "level": "DEBUG", "app": "shop"},
    {"line": "payment slow", "level": "WARN", "app": "pay", "meta": {"ms": 2350}},
    {"line": "card declined", "level": "ERROR", "app": "pay", "meta": {"order": "A-1002"}},
]


class TestLive:
    def test_lines_posted_after_load_appear_with_host_app_and_level(
        self, page: Page, server: DevServer
    ) -> None:
        """A batch posted after the page loaded shows up, each line with host, app and level."""
        assert 0 == count(page, ROWS)

        post(server, LINES, {"hostname": "web-7"})

        page.wait_for(f"document.querySelectorAll({ROWS!r}).length === 4")
        assert [line["line"] for line in LINES] == texts(page)
        first = page.evaluate(
            "(() => { const r = document.querySelector('#lines .row');"
            " return [r.querySelector('.level').textContent, r.querySelector('.host').textContent,"
            " r.querySelector('.app').textContent, r.className]; })()"
        )
        assert ["INFO", "web-7", "shop", "row lvl-info"] == first
        assert "4 lines received" in page.evaluate("document.getElementById('status').textContent")

    def test_per_level_counts(self, page: Page, server: DevServer) -> None:
        """The level buttons count the lines received at each level (WARN counts as warning)."""
        post(server, [*LINES, {"line": "again", "level": "error"}])

        page.wait_for("document.getElementById('count-error').textContent === '2'")
        counts = page.evaluate(
            "['debug','info','warning','error','critical'].map("
            "l => document.getElementById('count-' + l).textContent)"
        )
        assert ["1", "1", "1", "2", "0"] == counts

    def test_rate_chart_draws_arriving_lines(self, page: Page, server: DevServer) -> None:
        """The lines-per-second chart is blank before any line and shows a bar after."""
        inked = (
            "(c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
            ".filter((v, i) => i % 4 === 3 && v > 0).length)(document.getElementById('rate'))"
        )
        assert 0 == page.evaluate(inked)

        post(server, LINES)
        page.wait_for(f"document.querySelectorAll({ROWS!r}).length === 4")

        assert page.evaluate(inked) > 0

    def test_exception_text_is_preformatted(self, page: Page, server: DevServer) -> None:
        """A multi-line text (a traceback) is shown as a preformatted block, line breaks kept."""
        trace = "boom\nTraceback (most recent call last):\n  File 'x.py', line 1\nValueError: x"
        post(server, [{"line": trace, "level": "ERROR"}])

        page.wait_for(f"document.querySelectorAll({ROWS!r}).length === 1")
        assert ["PRE", trace] == page.evaluate(
            "(() => { const t = document.querySelector('#lines .row .text');"
            " return [t.tagName, t.textContent]; })()"
        )

    def test_line_text_is_never_html(self, page: Page, server: DevServer) -> None:
        """Markup in a line or its meta is shown as text; nothing of it runs or renders."""
        evil = '<img src=x onerror="window.pwned=1"><b>bold</b>'
        post(server, [{"line": evil, "app": "<i>a</i>", "meta": {"k": "<script>x</script>"}}])

        page.wait_for(f"document.querySelectorAll({ROWS!r}).length === 1")
        assert [evil] == texts(page)
        assert 0 == count(page, "#lines img, #lines b, #lines i, #lines script")
        assert page.evaluate("window.pwned === undefined")


class TestFilters:
    def test_level_filter_hides_and_shows(self, page: Page, server: DevServer) -> None:
        """Turning a level off hides its lines, also those arriving later; on shows them again."""
        post(server, LINES)
        page.wait_for(f"document.querySelectorAll({ROWS!r}).length === 4")

        click(page, "#levels button[data-level='error']")
        click(page, "#levels button[data-level='debug']")
        post(server, [{"line": "late error", "level": "ERROR"}, {"line": "late info"}])
        wait_received(page, 6)

        assert ["user ada logged in", "payment slow", "late info"] == texts(page)
        click(page, "#levels button[data-level='error']")
        assert [
            "user ada logged in",
            "payment slow",
            "card declined",
            "late error",
            "late info",
        ] == texts(page)

    def test_search_hides_and_shows_by_text_and_meta(self, page: Page, server: DevServer) -> None:
        """The search box (focused with '/') matches text and meta, any case; Escape clears it."""
        post(server, LINES)
        page.wait_for(f"document.querySelectorAll({ROWS!r}).length === 4")

        page.key("/", "Slash", "/")
        assert "search" == page.evaluate("document.activeElement.id")
        page.type_text("A-10")
        assert ["card declined"] == texts(page)
        page.evaluate("document.getElementById('search').value = ''")
        page.type_text("PAYMENT")
        assert ["payment slow"] == texts(page)
        post(server, [{"line": "payment retried", "level": "INFO"}, {"line": "other"}])
        wait_received(page, 6)
        assert ["payment slow", "payment retried"] == texts(page)

        page.key("Escape")
        assert 6 == count(page, SHOWN)

    def test_app_and_host_filters(self, page: Page, server: DevServer) -> None:
        """The app and host lists fill as lines arrive and narrow what is shown."""
        post(server, LINES, {"hostname": "web-1"})
        post(server, [{"line": "from db", "app": "shop"}], {"hostname": "db-1"})
        page.wait_for(f"document.querySelectorAll({ROWS!r}).length === 5")

        page.evaluate(
            "(() => { const s = document.getElementById('host'); s.value = 'db-1';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        assert ["from db"] == texts(page)
        page.evaluate(
            "(() => { const h = document.getElementById('host'); h.value = '';"
            " h.dispatchEvent(new Event('change')); const a = document.getElementById('app');"
            " a.value = 'pay'; a.dispatchEvent(new Event('change')); })()"
        )
        assert ["payment slow", "card declined"] == texts(page)


class TestKeyboardAndControls:
    def test_expanding_a_line_shows_meta_and_query_parameters(
        self, page: Page, server: DevServer
    ) -> None:
        """Enter on a focused line shows its meta and its request's query parameters as JSON."""
        params = {"hostname": "web-1", "tags": "blue,canary", "ip": "10.0.0.7", "mac": "aa:bb"}
        line = {"line": "order placed", "env": "staging", "meta": {"order": "A-1", "n": 2}}
        post(server, [line], params)
        page.wait_for(f"document.querySelectorAll({ROWS!r}).length === 1")

        page.evaluate("document.getElementById('search').focus()")
        page.key("Tab")  # from the search box, past the buttons, to the list
        page.key("Tab")
        page.key("Tab")
        assert "lines" == page.evaluate("document.activeElement.id")
        page.key("j")
        page.key("Enter")

        shown = page.evaluate(
            "Array.from(document.querySelectorAll('#lines .details pre'), p => p.textContent)"
        )
        assert 2 == len(shown)
        assert {"order": "A-1", "n": 2} == orjson.loads(shown[0])
        request = orjson.loads(shown[1])
        assert {**params, "env": "staging"}.items() <= request.items()
        assert "true" == page.evaluate(
            "document.querySelector('#lines .row').getAttribute('aria-expanded')"
        )
        page.key("Enter")
        assert 0 == count(page, "#lines .details")

    def test_scrolling_up_stops_following_until_end(self, page: Page, server: DevServer) -> None:
        """The view follows the newest line; scrolled up it stays put and offers the newer
        lines; End follows again."""
        at_bottom = (
            "(b => b.scrollHeight - b.scrollTop - b.clientHeight < 2)"
            "(document.getElementById('lines'))"
        )
        # 40 lines: more than the view shows, and all of them have rows.
        post(server, [{"line": f"first {i}"} for i in range(40)])
        page.wait_for(f"document.querySelectorAll({ROWS!r}).length === 40")
        page.wait_for(at_bottom)

        page.evaluate("document.getElementById('lines').scrollTop = 0")
        page.wait_for("document.getElementById('lines').scrollTop === 0")
        post(server, [{"line": f"later {i}"} for i in range(5)])
        page.wait_for("!document.getElementById('jump').hidden")

        assert "↓ 5 newer" == page.evaluate("document.getElementById('jump').textContent")
        assert 0 == page.evaluate("document.getElementById('lines').scrollTop")
        page.key("End")
        page.wait_for(at_bottom)
        assert page.evaluate("document.getElementById('jump').hidden")
        assert "later 4" == texts(page)[-1]

    def test_pause_holds_new_lines_until_resumed(self, page: Page, server: DevServer) -> None:
        """'p' pauses: new lines are counted but not shown; 'p' again shows them."""
        post(server, [{"line": "before"}])
        page.wait_for(f"document.querySelectorAll({ROWS!r}).length === 1")

        page.key("p")
        post(server, [{"line": "while paused"}])
        page.wait_for("document.getElementById('status').textContent.includes('1 new lines held')")
        assert ["before"] == texts(page)
        assert "paused" == page.evaluate("document.body.dataset.state")

        page.key("p")
        assert ["before", "while paused"] == texts(page)

    def test_theme_switches_between_light_and_dark(self, page: Page) -> None:
        """'t' switches the colours; both themes keep text and background apart."""
        background = "getComputedStyle(document.body).backgroundColor"
        first = page.evaluate(background)
        page.key("t")
        second = page.evaluate(background)
        page.key("t")

        assert first != second
        assert {"rgb(255, 255, 255)", "rgb(21, 24, 28)"} == {first, second}
        assert first == page.evaluate(background)


class TestBounds:
    def test_ten_thousand_lines_keep_the_page_bounded_and_responsive(
        self, page: Page, server: DevServer
    ) -> None:
        """10,000 lines posted at once: the page counts all, keeps at most 1,000 with rows
        for the newest that fill the view and half as much again (40 to 120 here), shows
        older kept ones when scrolled up, and still searches."""
        total = 10_000
        for start in range(0, total, 500):
            post(
                server, [{"line": f"line {i}", "level": "INFO"} for i in range(start, start + 500)]
            )

        page.wait_for(
            "document.getElementById('count-info').textContent.replace(/\\D/g, '') === '10000'"
        )
        page.wait_for(
            f"document.querySelector('{ROWS}:last-child .text').textContent === 'line 9999'"
        )
        kept = page.evaluate(
            "Number(document.getElementById('shown').textContent.match(/of (\\d+) kept/)[1])"
        )
        assert 250 <= kept <= 1000
        rows = count(page, ROWS)
        view = page.evaluate("document.getElementById('lines').clientHeight")
        assert 40 <= rows <= 120
        assert rows * 18 >= view  # the view is full
        assert f"line {total - rows}" == texts(page)[0]
        # All the page's elements: at most 120 rows of 7 elements and the page around them.
        assert page.evaluate("document.getElementsByTagName('*').length") < 1000

        page.evaluate("document.getElementById('lines').scrollTop = 0")
        page.wait_for(f"document.querySelectorAll({ROWS!r}).length > {rows}")
        assert texts(page)[0] < f"line {total - rows}"

        page.key("/", "Slash", "/")
        page.type_text("line 99")
        found = texts(page)
        assert len(found) >= 40
        assert [f"line {i}" for i in range(total - len(found), total)] == found
        assert all(text.startswith("line 99") for text in found)


class TestReconnect:
    def test_a_restarted_devserver_is_followed_with_its_new_lines(self, chromium: Browser) -> None:
        """The page reconnects to a devserver started again on the same port and shows
        its lines, although that server numbers them from 0 again."""
        first = DevServer().start()
        tab = chromium.new_page()
        try:
            tab.navigate(first.page_url)
            assert first.wait_for_page_clients(1, TIMEOUT)
            post(first, [{"line": "from the first server"}])
            tab.wait_for(f"document.querySelectorAll({ROWS!r}).length === 1")
            first.stop()
            with DevServer(port=first.port) as second:
                assert second.wait_for_page_clients(1, TIMEOUT)
                post(second, [{"line": "from the second server"}])
                tab.wait_for(f"document.querySelectorAll({ROWS!r}).length === 2")
                assert ["from the first server", "from the second server"] == texts(tab)
        finally:
            first.stop()
            tab.close()


class TestAccess:
    def test_page_answers_only_to_loopback_names(self, server: DevServer) -> None:
        """On loopback, the page and its stream refuse a foreign Host (DNS rebinding)."""
        for path in ("/", "/events", "/static/page.js"):
            response = requests.get(
                server.base_url + path,
                headers={"Host": "attacker.example", "Accept": "text/html"},
                timeout=TIMEOUT,
            )
            assert 403 == response.status_code, path
        ok = requests.get(server.page_url, headers={"Accept": "text/html"}, timeout=TIMEOUT)
        assert 200 == ok.status_code
        assert ok.headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in ok.headers["Content-Security-Policy"]

    def test_page_has_no_external_assets(self, server: DevServer) -> None:
        """The page loads nothing from another origin: every src and href is local."""
        html = requests.get(server.page_url, headers={"Accept": "text/html"}, timeout=TIMEOUT).text
        for needle in ("http://", "https://", "//cdn", "@import"):
            assert needle not in html
        for asset in ("/static/page.js", "/static/page.css"):
            body = requests.get(server.base_url + asset, timeout=TIMEOUT).text
            assert "http://" not in body and "https://" not in body


def _png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def test_screenshot_of_the_demo_lines(chromium: Browser, tmp_path: Path) -> None:
    """The page with the demo's lines, as docs/cli.md shows it (LOGDNA_UPDATE_SCREENSHOT=1
    rewrites docs/devserver-page.png)."""
    from logdna_client import LogDNAHandler
    from logdna_client._cli_demo import _demo_lines

    with DevServer() as srv:
        tab = chromium.new_page()
        try:
            tab.navigate(srv.page_url)
            assert srv.wait_for_page_clients(1, TIMEOUT)
            handler = LogDNAHandler(url=srv.url, app="demo", env="local", hostname="demo-host")
            log = logging.getLogger("shop")
            log.setLevel(logging.DEBUG)
            log.propagate = False
            log.addHandler(handler)
            try:
                sent = _demo_lines(log)
                assert handler.client.flush(timeout=TIMEOUT)
            finally:
                log.removeHandler(handler)
                handler.close()
            tab.wait_for(f"document.querySelectorAll({ROWS!r}).length === {sent}")
            tab.evaluate("document.querySelectorAll('#lines .row')[2].click()")
            png = tab.screenshot(1280, 560)
        finally:
            tab.close()
    assert (1280, 560) == _png_size(png)
    (tmp_path / "page.png").write_bytes(png)
    if os.environ.get("LOGDNA_UPDATE_SCREENSHOT"):
        SCREENSHOT.write_bytes(png)


def test_browser_errors_are_reported(chromium: Browser) -> None:
    """A script error in the page surfaces as BrowserError, not as a silent None."""
    tab = chromium.new_page()
    try:
        with pytest.raises(BrowserError, match="JavaScript error"):
            tab.evaluate("undefinedName.property")
    finally:
        tab.close()

"""Open the report in real headless Chromium: it renders, draws its plots, and fetches nothing.

Needs the Debian `chromium` package; skipped cleanly when it is absent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from distillguard.report.html import write_report
from tests.report.png import decode_png
from tests.report.rundir_factory import FakeRun

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium is not installed"),
]
QUIET_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=8000",
)


def _chromium(tmp: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run(
        [CHROMIUM, *QUIET_FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def _page_requests(netlog: Path) -> list[str]:
    """http(s) URLs the page asked for, from a Chromium NetLog."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        url = params.get("url", "")
        # "not an origin" marks Chromium's own background requests (update checks), not the page's.
        internal = params.get("initiator") == "not an origin"
        if event["type"] == start and url.startswith(("http:", "https:")) and not internal:
            urls.append(url)
    return urls


@pytest.fixture(scope="module")
def report_url(fake_run_master: FakeRun, tmp_path_factory: pytest.TempPathFactory) -> str:
    run = tmp_path_factory.mktemp("browser") / "run"
    shutil.copytree(fake_run_master.path, run)
    return write_report(run).resolve().as_uri()


def test_screenshot_is_not_blank(report_url: str, tmp_path: Path) -> None:
    png = tmp_path / "shot.png"
    _chromium(tmp_path, report_url, f"--screenshot={png}", "--window-size=1400,2000")
    pixels = decode_png(png).astype(float)
    assert pixels.shape[:2] == (2000, 1400)
    assert pixels.std() > 20  # a blank or single-colour page has ~0
    # Plots draw coloured bars (not only grey text): some strongly saturated pixels exist.
    rgb = pixels[..., :3]
    saturation = rgb.max(axis=2) - rgb.min(axis=2)
    assert np.mean(saturation > 80) > 0.01


def test_dom_has_tables_and_rendered_plots_offline(report_url: str, tmp_path: Path) -> None:
    netlog = tmp_path / "net.json"
    dom = _chromium(
        tmp_path,
        report_url,
        "--dump-dom",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: a fetch would fail
        f"--log-net-log={netlog}",
    ).stdout
    assert 'class="headline"' in dom
    assert 'id="accounts-table"' in dom
    # Plotly replaced the empty figure divs with SVG plots, with no network available.
    assert dom.count('class="main-svg"') >= 8
    assert 'id="fig-1-graph"' in dom and "js-plotly-plot" in dom
    assert "of 69 accounts shown" in dom  # the table filter script ran
    assert _page_requests(netlog) == []


def test_network_check_detects_a_page_request(tmp_path: Path) -> None:
    page = tmp_path / "leaky.html"
    page.write_text('<html><body><img src="http://cdn.example.invalid/x.png"></body></html>')
    netlog = tmp_path / "net.json"
    _chromium(
        tmp_path,
        page.as_uri(),
        "--dump-dom",
        f"--log-net-log={netlog}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
    )
    assert any("cdn.example.invalid" in u for u in _page_requests(netlog))

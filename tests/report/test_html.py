"""The HTML report: self-contained, complete, escaped, redactable, robust to missing files."""

from __future__ import annotations

import re
import shutil

import pytest
from plotly.offline import get_plotlyjs

from distillguard.errors import UserError
from distillguard.report import html
from distillguard.report.html import render_report, write_report
from tests.report.rundir_factory import HYDRA_PROMPT, FakeRun

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


@pytest.fixture(scope="module")
def report_text(fake_run_master: FakeRun, tmp_path_factory: pytest.TempPathFactory) -> str:
    run = tmp_path_factory.mktemp("html") / "run"
    shutil.copytree(fake_run_master.path, run)
    path = write_report(run)
    assert path == run / "report.html"
    return path.read_text()


def test_report_is_self_contained_with_plotly_once(report_text: str) -> None:
    plotly_js = get_plotlyjs()
    assert report_text.count(plotly_js) == 1
    # plotly.js itself mentions URLs it never fetches with our config; the page must not.
    page = report_text.replace(plotly_js, "")
    assert not EXTERNAL.search(page)
    assert "<link" not in page and "@import" not in page
    assert EXTERNAL.search('<img src="https://cdn.example/x.png">')  # the check can fail


def test_report_shows_campaigns_evidence_and_prompts(report_text: str, fake_run_master) -> None:
    text, fake_run = report_text, fake_run_master
    for cid in ("C1", "C2"):
        assert 'href="#c-' in text and f"Campaign {cid}" in text
    headline = text[
        text.index('class="headline"') : text.index("</table>", text.index('class="headline"'))
    ]
    assert "AS64500" in headline and "python-httpx/0.27" in headline and "reasoning" in headline
    assert "moved 48% of its traffic to atlas-4" in text
    assert f"{len(fake_run.hydra) + 1}/25" in text  # reasons counted over campaign accounts
    assert HYDRA_PROMPT.split("{")[0].strip()[:40] in text
    for i in (1, 2):
        for part in ("daily", "caps", "net", "graph"):
            assert f'id="fig-{i}-{part}"' in text
    assert "unparsable timestamp" in text and "fingerprints" in text  # run summary


def test_prompt_text_is_escaped(report_text: str) -> None:
    text = report_text
    assert "&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in text
    assert "</script><b>x</b>" not in text


def test_redact_replaces_prompts_with_template_ids(fake_run: FakeRun) -> None:
    text = render_report(fake_run.path, redact=True)
    assert HYDRA_PROMPT.split("{")[0].strip()[:40] not in text
    assert f"[redacted — template {fake_run.hydra_tpl}]" in text
    assert "prompt text redacted" in text


def test_accounts_table_is_capped_with_a_note(
    fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(html, "MAX_ACCOUNT_ROWS", 10)
    text = render_report(fake_run.path)
    body = text[text.index('id="accounts-table"') :]
    body = body[: body.index("</table>")]
    assert body.count("<tr data-flagged") == 10
    assert "Showing the 10 riskiest of 69 accounts" in text
    assert "ent-000" in body  # riskiest first (0.99)


def test_graph_is_sampled_for_large_campaigns(
    fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(html, "MAX_GRAPH_NODES", 8)
    text = render_report(fake_run.path)
    assert "\\u003csup\\u003e8 of 25 accounts" in text


def test_run_without_campaigns_says_so(quiet_run: FakeRun) -> None:
    text = render_report(quiet_run.path)
    assert "No campaign was detected" in text
    assert 'id="accounts-table"' in text


def test_missing_optional_files_still_render(fake_run: FakeRun) -> None:
    work = fake_run.path / "work"
    for name in ("edges.parquet", "campaign_releases.parquet", "campaign_daily.parquet"):
        (work / name).unlink()
    (fake_run.path / "summary.json").unlink()
    text = render_report(fake_run.path)
    assert "Campaign C1" in text and "moved 48%" not in text
    assert "\\u003csup\\u003e25 accounts, 0 links\\u003c/sup" in text


def test_contract_outputs_alone_render(fake_run: FakeRun) -> None:
    for name in ("work", "summary.json"):
        path = fake_run.path / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    text = render_report(fake_run.path)
    assert "Campaign C1" in text and 'id="accounts-table"' in text
    assert "No prompt templates recorded" in text


def test_not_a_run_directory(tmp_path) -> None:
    with pytest.raises(UserError, match="not a detect run directory"):
        write_report(tmp_path)

"""The report in a real browser: Debian's chromium, headless, driven by playwright-core (node).

`tests/report/browser/setup.sh` installs both (`make test` runs it). Without them this test fails
and says so: a report nobody opened in a browser is not a tested report.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from report_jobs import XSS

BROWSER_DIR = Path(__file__).parent / "browser"
CHROMIUM = os.environ.get("RMSCORE_CHROMIUM", "/usr/bin/chromium")
# Where the screenshots are kept for people to look at (default: pytest's temporary directory).
SHOTS_ENV = "RMSCORE_REPORT_SCREENSHOTS"


def _setup_problem() -> str | None:
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} is missing"
    if shutil.which("node") is None:
        return "node is missing"
    if not (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        return f"{BROWSER_DIR}/node_modules/playwright-core is missing"
    return None


def browse(shots: Path, *files: Path) -> dict[str, Any]:
    problem = _setup_problem()
    if problem:
        pytest.fail(
            f"BROWSER TEST NOT SET UP: {problem}. Run `bash tests/report/browser/setup.sh` "
            "(make test runs it) to install Debian's chromium and playwright-core.",
            pytrace=False,
        )
    shots.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["node", str(BROWSER_DIR / "check_report.mjs"), str(shots), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=BROWSER_DIR,
    )
    assert done.returncode == 0, f"the browser run failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get(SHOTS_ENV)
    return Path(where) if where else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browsed(shots: Path, pairwise_report: Path, report_db: Any, chat_job: str) -> dict[str, Any]:
    from db.report import build_report

    chat = pairwise_report.with_name("chat.html")
    chat.write_text(build_report(report_db, chat_job), encoding="utf-8")
    result = browse(shots, pairwise_report, chat)
    print(f"\nreport screenshots ({result['chromium']}): " + ", ".join(p["screenshot"] for p in result["pages"]))
    return result


def _clean(page: dict[str, Any]) -> None:
    assert page["console_errors"] == [], page["console_errors"]
    assert page["page_errors"] == [], page["page_errors"]
    assert page["dialogs"] == [], f"a script in the report ran: {page['dialogs']}"
    assert page["requests"] == [], f"the report loaded from the network: {page['requests']}"
    assert page["scripts"] == 0
    assert Path(page["screenshot"]).stat().st_size > 10_000


def test_pairwise_report_in_chromium(browsed: dict[str, Any]) -> None:
    page = browsed["pages"][0]
    _clean(page)
    tables = {t["id"]: t for t in page["tables"]}
    assert {"rewardbench", "evalbiasbench", "accuracy", "errors"} <= set(tables)
    assert all(t["visible"] for t in tables.values())
    assert tables["evalbiasbench"]["rows"] == 7  # six biases and all together
    assert tables["rewardbench"]["rows"] == 5  # four sections and the score
    drawn = [c for c in page["charts"] if c["width"] > 100 and c["height"] > 50 and c["paths"] > 0]
    assert len(drawn) >= 3, page["charts"]
    # Subset names and metadata with markup in them read as the text they are.
    assert f"hostile {XSS}" in page["text"]


def test_the_accuracy_table_a_reader_sees_is_the_jobs_results(
    browsed: dict[str, Any], report_db: Any, pairwise_job: str
) -> None:
    """The numbers as Chromium renders them (pairs, right, accuracy per subset and overall), each
    recomputed here from the job's stored result records."""
    from collections import defaultdict

    from db.results import iter_results

    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in iter_results(report_db, pairwise_job):
        if "correct" in r:
            for subset in (r.get("subset") or "(none)", "overall"):
                tally[subset][0] += 1
                tally[subset][1] += bool(r["correct"])
    table = {t["id"]: t for t in browsed["pages"][0]["tables"]}["accuracy"]
    shown = {row[0]: row[1:4] for row in table["cells"]}
    assert set(shown) == set(tally), (shown, dict(tally))
    for subset, (n, right) in tally.items():
        pairs, correct, accuracy = shown[subset]
        assert int(pairs.replace(",", "")) == n, subset
        assert int(correct.replace(",", "")) == right, subset
        assert accuracy.startswith(f"{100 * right / n:.1f}%"), (subset, accuracy)


def test_untrusted_conversation_is_shown_not_run(browsed: dict[str, Any]) -> None:
    page = browsed["pages"][1]
    _clean(page)
    assert page["text"].count(XSS) >= 3  # custom_id, user turn, reply
    assert any(c["paths"] > 0 and c["width"] > 100 for c in page["charts"])


def test_the_harness_catches_what_it_looks_for(tmp_path: Path, shots: Path) -> None:
    """A page with a running script, a console error and a fetch: all three must be reported."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><title>bad</title><p>x</p>"
        "<script>console.error('boom'); alert(1); fetch('http://127.0.0.1:9/x').catch(() => {});</script>",
        encoding="utf-8",
    )
    (page,) = browse(shots, bad)["pages"]
    assert any("boom" in e for e in page["console_errors"])
    assert page["dialogs"] == ["alert: 1"]
    assert page["requests"] == ["http://127.0.0.1:9/x"]
    assert page["scripts"] == 1

"""The call rate with digest (tests/bench/callrate_digest.py): reading the plain figure from
docs/benchmarks.md, and the figure's text naming both."""

from __future__ import annotations

from tests.bench import callrate
from tests.bench.callrate_digest import (
    DIGEST,
    PASSWORD,
    USERNAME,
    PlainFigure,
    figure,
    plain_figure,
)
from tests.bench.common import REPO, Budget

ROW = ("| Call setup rate, zero failed calls (INVITE, 200, ACK, 1 s hold, BYE; X-Room-Name) | "
       "*Older than the code.* **300 calls/s** (99% of a core, 5.1 ms CPU per call; first "
       "failing rate 310/s), taken 2026-12-05 at 80612a4. Was 550 calls/s (2.2 ms) | 500 |\n")


def test_the_plain_row_gives_rate_cpu_and_date() -> None:
    text = "# Measured figures\n\n| figure | measured | goal |\n|---|---|---|\n" + ROW
    assert plain_figure(text) == PlainFigure(300, 5.1, "2026-12-05")


def test_a_row_without_cpu_or_date_still_gives_the_rate() -> None:
    row = "| Call setup rate, zero failed calls | **550 calls/s** | 500 |\n"
    assert plain_figure(row) == PlainFigure(550, None, "")


def test_no_row_or_no_rate_is_none() -> None:
    assert plain_figure("| Memory per call (200 calls) | idle 21 KiB | |\n") is None
    assert plain_figure("| Call setup rate, zero failed calls | not measured yet | 500 |\n") \
        is None
    # the digest row itself is not the plain figure
    digest_row = ("| Call setup rate through a trunk with digest on every INVITE | "
                  "**100 calls/s** | |\n")
    assert plain_figure(digest_row) is None


def test_the_repository_docs_have_the_plain_figure() -> None:
    plain = plain_figure((REPO / "docs" / "benchmarks.md").read_text())
    assert plain is not None and plain.rate > 0 and plain.taken


def test_the_figure_names_both_numbers() -> None:
    best = callrate.Trial(rate=200, calls=2000, ok=True, successful=2000,
                          cpu_percent=90.0, cpu_ms_per_call=6.25, setup_ms=3.0)
    bad = callrate.Trial(rate=300, calls=3000, ok=False, reasons=["sipp exit 1", "x=1"])
    found = callrate.Search(best, bad, [best, bad], 300, Budget(10))
    fig = figure(found, PlainFigure(300, 5.1, "2026-12-05"), duration_s=10, hold_ms=1000)
    assert fig.measured.startswith("200 calls/s with digest (6.25 ms CPU per call")
    assert "without digest: 300 calls/s, 5.1 ms CPU per call (docs/benchmarks.md, " \
        "taken 2026-12-05; not this run)" in fig.measured
    assert "first failing rate 300/s (x=1)" in fig.how
    assert fig.details["without_digest"]["rate"] == 300


def test_nothing_passed_and_no_plain_row() -> None:
    bad = callrate.Trial(rate=50, calls=500, ok=False, reasons=["sipp exit 1"])
    fig = figure(callrate.Search(None, bad, [bad], 50, Budget(10)), None, duration_s=10,
                 hold_ms=1000)
    assert fig.measured == ("0 calls/s with digest (no rate passed); without digest: not in "
                            "docs/benchmarks.md")


def test_the_scenario_answers_the_challenge_with_the_trunks_credentials() -> None:
    xml = (REPO / "tests" / "bench" / "scenarios" / DIGEST.scenario).read_text()
    assert '<recv response="407" auth="true"/>' in xml
    assert f"[authentication username={USERNAME} password={PASSWORD}]" in xml
    assert "X-Room-Name" not in xml  # the number routes the call
    assert DIGEST.extra["sip"]["digest_algorithms"] == ["MD5"]  # what sipp 3.6 answers

"""End to end in headless Chromium: a rater rates three items in the browser, the rows are
in the store, and the leaderboard then shows the human score; a rater-only app, opened from
an invitation link, shows the Rate page alone, without candidate names or references. The
store is a copy of the one filled by real tiny-model runs (``tiny_run_project`` in conftest)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness import panel
from harness.netutil import free_port
from harness.judge.rubric import load_rubric
from harness.store import Store
from tests.helpers import copy_project

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("streamlit did not come up")


@contextmanager
def _serving(info: dict, **env_extra: str):
    """The app on a free loopback port, against the project copy; its URL."""
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HARNESS_DB=str(info["db"]), HARNESS_GOALS=str(info["goals_dir"]),
               HARNESS_RUBRICS=str(info["rubrics_dir"]), HARNESS_LEADERBOARDS=str(REPO / "leaderboards"), **env_extra)
    cmd = [str(Path(sys.executable).parent / "streamlit"), "run", str(REPO / "app.py"), "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def chromium_page():
    """A page of Debian's headless Chromium (no browser download), with minute-long waits: the
    app renders on a loaded CI machine. Closed afterwards."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        page = browser.new_page()
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)
        try:
            yield page
        finally:
            browser.close()


def _needs_a_browser() -> None:
    if not Path(CHROMIUM).exists() or shutil.which("streamlit", path=str(Path(sys.executable).parent)) is None:
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install -y chromium) and streamlit")
    pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package (pip), no browser download")


@pytest.fixture
def served(tiny_run_project, tmp_path):
    _needs_a_browser()
    info = copy_project(tiny_run_project, tmp_path / "proj")
    with _serving(info) as url:
        yield url, info


@pytest.fixture
def served_to_raters(tiny_run_project, tmp_path):
    """The rater-only app (``HARNESS_APP_MODE=rater``, as ``harness app --rater`` starts it),
    and an invitation for rater Dana."""
    _needs_a_browser()
    info = copy_project(tiny_run_project, tmp_path / "proj")
    token = panel.new_invitation_token()
    Store(info["db"]).put_invitation(info["goal"], panel.rater_name("Dana"), panel.invitation_hash(token))
    with _serving(info, HARNESS_APP_MODE="rater") as url:
        yield url, info, token


def test_rater_rates_three_items_and_leaderboard_shows_human_score(served):
    from playwright.sync_api import expect

    url, info = served
    goal = info["goal"]
    rubric = load_rubric("tone", info["rubrics_dir"])
    formal4, empathetic3 = rubric.criteria[0].scale[4], rubric.criteria[1].scale[3]
    with chromium_page() as page:
        page.goto(f"{url}/?page=Rate&goal={goal}")
        page.get_by_label("Your name").fill("Dana")
        page.get_by_text("Start rating").click()
        for k in range(3):
            # Scoped to this item's container: the previous item's radios (answered, so
            # checked) can stay on the page until the rerun replaces them.
            # A long option label can also show in a hover tooltip: click inside the radio group,
            # once it holds exactly this item's one fresh (unchecked) option.
            item = page.locator(f".st-key-rate-item-{k}")
            expect(item.get_by_text(f"Item {k + 1} of 12")).to_be_visible()
            for crit, label in (("formal", f"4 · {formal4}"), ("empathetic", f"3 · {empathetic3}")):
                group = item.get_by_role("radiogroup", name=crit)
                expect(group.get_by_role("radio", name=label)).to_have_count(1)
                expect(group.get_by_role("radio", name=label)).not_to_be_checked()
                group.get_by_text(label, exact=True).click()
                expect(item.get_by_text(f"Saved ✓ ({crit})")).to_be_visible()
            item.get_by_role("button", name="Submit & next").click()
        expect(page.get_by_text("Item 4 of 12")).to_be_visible()
        expect(page.get_by_text("3 of 12 items rated")).to_be_visible()

        store = Store(info["db"])
        rows = store.ratings(goal)
        assert len(rows) == 6 and {r["rater"] for r in rows} == {"dana"}  # names are stored normalised
        assert sorted((r["criterion"], r["score"]) for r in rows) == [("empathetic", 3.0)] * 3 + [("formal", 4.0)] * 3
        items = [panel.PanelItem.from_row(r) for r in store.panel_items(goal)]
        assert len(items) == 12 and {it.run_id for it in items} == {info["latest"]}
        rated = {it.item_id: it for it in items if it.item_id in {r["item_id"] for r in rows}}
        assert len(rated) == 3 and {it.candidate for it in rated.values()} <= set(info["candidates"])
        expected = panel.human_scores(rows, items, "tone")
        assert sum(len(v) for v in expected.values()) == 3
        assert all(v == 3.5 for per in expected.values() for v in per.values())

        page.goto(f"{url}/?page=Leaderboard&goal={goal}")
        expect(page.get_by_text("Human panel")).to_be_visible()
        table = page.locator("[data-testid='stTable']")
        for cand, per in expected.items():
            row = table.locator("tr", has_text=cand)
            expect(row).to_contain_text("human.tone")
            expect(row).to_contain_text(f"{sum(per.values()) / len(per):.2f}")
            expect(row).to_contain_text(str(len(per)))
        unrated = set(info["candidates"]) - set(expected)
        for cand in unrated:
            expect(table.locator("tr", has_text=cand)).to_have_count(0)


def test_a_rater_sees_the_system_prompt_rates_by_keyboard_and_leaves_a_comment_and_flag(served):
    """The Rate page shows the conversation the candidate was sent (the record's system prompt
    first); keys 4 and 3 answer the two criteria, a comment and the flag are saved with the
    ratings, and n submits: all of it in the DuckDB file."""
    from playwright.sync_api import expect

    from tests.helpers import ROUTE_SYSTEM

    url, info = served
    goal = info["goal"]
    rubric = load_rubric("tone", info["rubrics_dir"])
    with chromium_page() as page:
        page.goto(f"{url}/?page=Rate&goal={goal}")
        page.get_by_label("Your name").fill("Ivy")
        page.get_by_text("Start rating").click()
        item = page.locator(".st-key-rate-item-0")
        expect(item.get_by_text("Item 1 of 12")).to_be_visible()
        expect(item.get_by_text(ROUTE_SYSTEM, exact=True)).to_be_visible()  # the record's system prompt
        expect(item.get_by_text("Keys: 1–5 score the first unanswered criterion", exact=False)).to_be_visible()
        expect(item.get_by_role("radiogroup", name="empathetic")).to_be_visible()
        page.wait_for_function("document.__harnessRateKeys === true")  # the page's key handler is in
        item.get_by_text("Item 1 of 12").click()  # focus on the page, not on a widget
        page.keyboard.press("4")
        expect(item.get_by_text("Saved ✓ (formal)")).to_be_visible()
        expect(item.get_by_role("radiogroup", name="formal").get_by_role(
            "radio", name=f"4 · {rubric.criteria[0].scale[4]}")).to_be_checked()
        page.keyboard.press("3")
        expect(item.get_by_text("Saved ✓ (empathetic)")).to_be_visible()
        item.get_by_role("textbox", name="Comment (optional)").fill("the output repeats the question")
        item.get_by_text("Flag this item", exact=False).click()
        expect(item.get_by_text("Saved ✓ (comment and flag)")).to_be_visible()
        page.keyboard.press("n")
        expect(page.locator(".st-key-rate-item-1").get_by_text("Item 2 of 12")).to_be_visible()

        store = Store(info["db"])
        first = panel.queue_for_rater([panel.PanelItem.from_row(r) for r in store.panel_items(goal)], [], "ivy",
                                      2, goal=goal)[0]
        assert sorted((r["rater"], r["item_id"], r["criterion"], r["score"]) for r in store.ratings(goal)) == \
            [("ivy", first.item_id, "empathetic", 3.0), ("ivy", first.item_id, "formal", 4.0)]
        assert [(n["rater"], n["item_id"], n["comment"], n["flagged"]) for n in store.rating_notes(goal)] == \
            [("ivy", first.item_id, "the output repeats the question", True)]


def test_rater_only_app_from_an_invitation_link_shows_no_candidate_names_or_references(served_to_raters):
    from playwright.sync_api import expect

    url, info, token = served_to_raters
    goal, store = info["goal"], Store(info["db"])
    rubric = load_rubric("tone", info["rubrics_dir"])
    with chromium_page() as page:
        for wanted in ("Leaderboard", "Compare"):  # no other page, whatever the URL asks for
            page.goto(f"{url}/?page={wanted}&goal={goal}")
            expect(page.get_by_role("heading", name=f"Rate · {goal}")).to_be_visible()
            expect(page.get_by_label("Invitation token", exact=True)).to_be_visible()  # by invitation: no name to type
            expect(page.get_by_label("Your name")).to_have_count(0)
        page.goto(f"{url}/?token={token}")
        item = page.locator(".st-key-rate-item-0")
        expect(item.get_by_text("Item 1 of 12")).to_be_visible()
        expect(page.get_by_text("Rating as dana")).to_be_visible()
        # The whole item is on the page (its last criterion comes after input and output) before
        # anything is read from it.
        expect(item.get_by_role("radiogroup", name="empathetic")).to_be_visible()
        expect(item.locator("[data-testid='stCode']")).to_have_count(2)  # input and output, no reference
        shown = page.locator("body").inner_text()
        for cand in info["candidates"]:
            assert cand not in shown, f"candidate name {cand!r} shown to a rater"
        expect(page.get_by_text("Reference answer")).to_have_count(0)
        for label in ("Page", "Leaderboard", "Compare", "Run (latest first)"):
            expect(page.get_by_text(label, exact=True)).to_have_count(0)
        # The item shown is Dana's first (her own order): its input, then one output.
        items = [panel.PanelItem.from_row(r) for r in store.panel_items(goal)]  # drawn on the first visit
        first = panel.rater_order(items, goal, "dana")[0]
        codes = [c.inner_text() for c in item.locator("[data-testid='stCode']").all()]
        assert len(codes) == 2 and codes[0].strip() == store.example(goal, first.example_id)["input"].strip()
        label = f"4 · {rubric.criteria[0].scale[4]}"
        item.get_by_role("radiogroup", name="formal").get_by_text(label, exact=True).click()
        expect(item.get_by_text("Saved ✓ (formal)")).to_be_visible()
        assert [(r["rater"], r["item_id"], r["score"]) for r in store.ratings(goal)] == [("dana", first.item_id, 4.0)]


def test_the_training_page_draws_the_data_size_curve_with_its_extrapolation(curve_project, tmp_path):
    """A train_fraction sweep's curve on the Training page in the browser: the metric by
    training-set size, and under it the extrapolated size that would reach the threshold (or
    the reason there is none)."""
    from playwright.sync_api import expect

    _needs_a_browser()
    root = tmp_path / "proj"
    shutil.copytree(curve_project["root"], root)
    info = {"db": root / "harness.duckdb", "goals_dir": root / "goals", "rubrics_dir": curve_project["rubrics_dir"]}
    with _serving(info) as url, chromium_page() as page:
        page.goto(f"{url}/?page=Training&goal={curve_project['goal']}")
        expect(page.get_by_text("Data-size curve: lora, accuracy").first).to_be_visible()
        expect(page.get_by_text("To reach").first).to_be_visible()
        # the chart is drawn (a Vega-Lite canvas or SVG inside the chart element)
        chart = page.locator("[data-testid='stVegaLiteChart'], [data-testid='stArrowVegaLiteChart']").first
        expect(chart).to_be_visible()

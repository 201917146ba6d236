"""Charts people would rather look at, in the report and the app: titled axes, each metric's
threshold as a rule, intervals, one scale per axis; the Markdown report links SVG files
(GitHub strips inline SVG); the report has examples, judge and human sections.

The store is a copy of the one filled by real tiny-model runs (``tiny_run_project``), with a
few human ratings added so the judge can be checked against the panel.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.charts import RATING_SCALE, THRESHOLD, UNIT_SCALE, history_charts, interval_chart, scale_of
from tests.helpers import ROOT, copy_project

pytestmark = pytest.mark.slow
FIGURE = re.compile(r'<figure class="chart" data-kind="(\w+)" data-name="([^"]+)">(.*?)</figure>', re.S)


@pytest.fixture
def rated(tiny_run_project, tmp_path):
    """A project copy whose panel items were drawn and rated by two raters."""
    from harness.app import data
    from harness.goals import load_goal
    from harness.store import Store

    info = copy_project(tiny_run_project, tmp_path / "proj")
    store = Store(info["db"])
    goal = load_goal(info["goals_dir"] / f"{info['goal']}.yaml")
    items = data.ensure_items(store, goal, ROOT / "rubrics")
    for rater, base in (("ann", 2), ("bob", 3)):
        for k, it in enumerate(items):
            for crit in ("formal", "empathetic"):
                store.put_rating(goal.goal, rater, it.item_id, crit, score=float(base + k % 3))
    return dict(info, store=store, goal_obj=goal)


def _svg_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_html_report_charts_have_axes_thresholds_and_intervals(rated, tmp_path):
    from harness.report import write_report

    goal = rated["goal_obj"]
    html = write_report(rated["store"], goal, tmp_path / "r.html").read_text(encoding="utf-8")
    figures = FIGURE.findall(html)
    assert figures and not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from a network
    assert "<script" not in html  # static SVG: renders without network or JavaScript
    names = {name for _, name, _ in figures}
    absolute = {c.metric for c in goal.success if not c.relative_op}
    assert {"accuracy", "judge.tone", "human.tone"} <= absolute
    for kind, name, svg in figures:
        assert svg.count('aria-roledescription="axis"') >= 2 and "X-axis titled" in svg and "Y-axis titled" in svg, name
        metric = name.split("-", 1)[1]
        if kind == "metric" and metric in absolute:
            assert f'aria-label="{THRESHOLD}"' in svg, name  # the criterion's threshold rule
            assert "role-mark layer_0_marks" in svg  # the interval bars
    for metric in absolute:
        assert any(n.endswith("-" + metric) for n in names), (metric, names)
    assert any(kind == "loss" for kind, _, _ in figures)
    for section in ("## Examples", "## Judge", "## Human panel"):
        assert f"<h2>{section[3:]}</h2>" in html
    assert "Agreement with the human panel" in html and "Krippendorff" in html
    assert html.count("<h3>") >= 3 and ">best<" in html and ">worst<" in html  # per candidate


def test_markdown_report_links_svg_files_and_embeds_none(rated, tmp_path):
    from harness.report import write_report

    out = write_report(rated["store"], rated["goal_obj"], tmp_path / "reports" / "r.md")
    md = out.read_text(encoding="utf-8")
    assert "<svg" not in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links and all(link.startswith("r_charts/") and link.endswith(".svg") for link in links)
    for link in links:
        svg = _svg_of(out.parent / link)
        assert svg.startswith("<svg") and 'aria-roledescription="axis"' in svg
    assert "## Examples" in md and "## Judge" in md and "## Human panel" in md


def test_scales_never_share_an_axis():
    assert scale_of("accuracy", [0.2, 0.9]) == UNIT_SCALE
    assert scale_of("judge.tone", [3.1, 4.2]) == RATING_SCALE and scale_of("human.tone.formal", [2.5]) == RATING_SCALE
    assert scale_of("judge.tone", [0.4, 0.6]) == UNIT_SCALE  # a pairwise judge's win rate
    assert scale_of("bleu", [21.0, 35.0]) == "bleu"
    rows = [{"run_id": f"r{i}", "metric": m, "value": v} for i in range(2)
            for m, v in (("accuracy", 0.5 + i / 10), ("judge.tone", 3 + i), ("bleu", 20.0 + i))]
    charts = history_charts(rows, {"accuracy": 0.6, "judge.tone": 3.5})
    assert len(charts) == 3
    specs = [json.dumps(c.to_dict()) for c in charts]
    assert sum(THRESHOLD in s for s in specs) == 2  # accuracy's and judge.tone's, each on its own chart
    spec = interval_chart([{"candidate": "a", "value": 0.7, "ci_low": 0.6, "ci_high": 0.8}], "accuracy",
                          threshold=0.6).to_dict()
    rules = [layer for layer in spec["layer"] if json.dumps(layer).count(THRESHOLD)]
    assert rules  # the threshold is a layer of its own


def _app_charts(at) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("vega_lite_chart")]


def test_app_charts_carry_the_threshold(rated, monkeypatch):
    import pyarrow as pa

    from harness.results import results_dict
    from tests.helpers import app_on_localhost

    with app_on_localhost(monkeypatch, rated["db"], rated["goals_dir"]) as at:
        assert not at.exception, [e.value for e in at.exception]
        at.selectbox(key="lb:chart_metric").set_value("accuracy").run()
        specs = _app_charts(at)
        interval = next(s for s in specs if "per candidate" in json.dumps(s.get("title")))
        assert THRESHOLD in json.dumps(interval) and "ci_high" in json.dumps(interval)
        # The bar is the interval the dot's colour (the verdict) rests on, at the verdict's level —
        # what the report draws — not the metric's interval at the goal's level.
        store, goal = rated["store"], rated["goal_obj"]
        res = results_dict(store, goal.goal, store.runs(goal.goal)[0]["run_id"])
        verdicts = {c["name"]: next(v for v in c["criteria"] if v["metric"] == "accuracy" and v["baseline"] is None)
                    for c in res["candidates"]}
        el = next(e.proto for e in at.get("vega_lite_chart") if json.loads(e.proto.spec).get("title") == interval["title"])
        frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in el.datasets]
        rows = next(f for f in frames if "ci_high" in f.columns)
        drawn = {r["candidate"]: r for r in rows.to_dict("records")}
        assert drawn and set(drawn) <= set(verdicts)
        for name, d in drawn.items():
            v = verdicts[name]
            assert (d["ci_low"], d["ci_high"], d["status"]) == (pytest.approx(v["ci"][0]), pytest.approx(v["ci"][1]),
                                                                v["status"])
        levels = {v["confidence"] for v in verdicts.values()}
        assert any(c > goal.confidence for c in levels)  # Holm over candidates: stricter than the goal's level
        assert all(f"{c * 100:.4g}%" in json.dumps(interval["title"]) for c in levels)
        at.selectbox(key="lb:history_candidate").set_value("lora").run()
        history = [s for s in _app_charts(at) if "across runs" in json.dumps(s.get("title"))]
        assert len(history) >= 2  # 0–1 metrics and 1–5 judge scores on separate charts
        titles = [json.dumps(s["title"], ensure_ascii=False) for s in history]
        assert any(UNIT_SCALE in t for t in titles) and any(RATING_SCALE in t for t in titles)
        assert any(THRESHOLD in json.dumps(s) for s in history)


def test_a_sweeps_loss_curves_share_one_chart():
    from harness.app.charts import sweep_loss_chart

    points = [{"candidate": c, "step": s, "split": split, "loss": 2.0 / s + i}
              for i, c in enumerate(("lora-r4", "lora-r8")) for s in (1, 2, 3) for split in ("train", "validation")]
    spec = sweep_loss_chart(points, {"lora-r4": 2, "lora-r8": None}).to_dict()
    lines = spec["layer"][0]["encoding"]
    assert lines["color"]["field"] == "candidate" and lines["strokeDash"]["field"] == "split"
    assert lines["x"]["title"] == "training step" and lines["y"]["title"] == "loss"
    data = next(iter(spec["datasets"].values()))
    assert {d["candidate"] for d in data} == {"lora-r4", "lora-r8"}

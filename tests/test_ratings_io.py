"""`harness ratings import/export`: ratings files checked whole, written in one transaction, round-tripped.

Each test runs a goal of `kind: file` candidates (no model) into a real DuckDB file, then rates it.
"""
import csv
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from harness.errors import InputError
from harness.ratings_io import export_rows, import_ratings, plan_import, write_rows
from tests.helpers import ROOT, write_eval_goal, write_jsonl

RUBRICS = ROOT / "rubrics"
LABELS = ["billing", "shipping", "technical", "account"]


def run_project(tmp_path, db_name="s.duckdb", n=24):
    """A goal with two file candidates (base, tuned) run into ``db_name``, and ``extra``, a
    candidate of the goal that was not run; its human panel draws 4 items per rubric."""
    from harness.goals import load_goal
    from harness.runner import run_goal
    from harness.store import Store

    rows = [{"text": f"ticket {i}: customer needs help with case {i * 31 % 997}", "label": LABELS[i % 4]}
            for i in range(n)]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    cands = []
    for name, shift in (("base", 1), ("tuned", 0), ("extra", 2)):
        outs = [{"input": r["text"], "output": LABELS[(i + shift * (i % 2)) % 4]} for i, r in enumerate(rows)]
        cands.append({"name": name, "kind": "file", "path": write_jsonl(tmp_path / f"{name}.jsonl", outs)})
    goal_file = write_eval_goal(tmp_path / "g.yaml", "rated", data, success=[{"metric": "accuracy", "at_least": 0.5}],
                                candidates=cands)
    with goal_file.open("a") as fh:
        fh.write("human: {rubrics: [correctness, tone], items: 4, raters_per_item: 1}\n")
    goal = load_goal(goal_file)
    store = Store(tmp_path / db_name)
    result = run_goal(goal, store, only=["base", "tuned"], progress=False, work_dir=tmp_path / "work",
                      rubrics_dir=RUBRICS)
    ids = sorted({r["example_id"] for r in store.run_outputs(result.run_id)})
    return SimpleNamespace(goal_file=goal_file, goal=goal, store=store, run_id=result.run_id, ids=ids,
                           inputs=store.example_inputs(goal.goal), db=tmp_path / db_name)


@pytest.fixture
def project(tmp_path):
    return run_project(tmp_path)


def harness(*args):
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def rating(p, i, candidate="tuned", rater="ann", score=4, **extra):
    return {"example_id": p.ids[i], "candidate": candidate, "rater": rater, "rubric": "correctness",
            "criterion": "correctness", "score": score, **extra}


def stored(p):
    items = {it["item_id"]: it for it in p.store.panel_items(p.goal.goal)}
    return sorted((items[r["item_id"]]["example_id"], items[r["item_id"]]["candidate"], r["rater"], r["criterion"],
                   r["score"], r["choice"]) for r in p.store.ratings(p.goal.goal))


def test_jsonl_import_attaches_ratings_to_panel_items_of_the_run(tmp_path, project):
    p = project
    rows = [rating(p, i, cand, rater, score=3 + (i + len(rater)) % 3)
            for i in range(3) for cand in ("base", "tuned") for rater in ("ann", " bob ")]
    plan = import_ratings(p.goal, p.store, write_jsonl(tmp_path / "r.jsonl", rows), RUBRICS)
    assert plan.summary() == "imported 12 ratings from 2 raters for 6 outputs; goal rated"
    got = stored(p)
    assert len(got) == 12 and {r[2] for r in got} == {"ann", "bob"}  # rater names are stripped
    assert ("tuned" in {r[1] for r in got}) and {r[0] for r in got} == set(p.ids[:3])
    items = p.store.panel_items(p.goal.goal)
    assert {it["run_id"] for it in items} == {p.run_id} and {it["mode"] for it in items} == {"pointwise"}
    # The goal had no panel yet: the one the Rate page draws (4 items a rubric) was stored with the import.
    drawn = [it for it in items if it["rubric"] == "tone"]
    assert len(drawn) == 4 and not any(r["item_id"] in {d["item_id"] for d in drawn}
                                       for r in p.store.ratings(p.goal.goal))


def test_one_person_under_several_spellings_is_one_rater(tmp_path, project):
    """Names are stored as the app and invitations store them (NFKC, casefolded, invisible
    characters dropped): `Ann`, `ANN` and `ann` + a zero-width space rating one output are one
    rater rating it three times, not a panel of three that a human criterion could pass on."""
    p = project
    rows = [rating(p, 0, rater=name) for name in ("Ann", "ANN", "ann\u200b")]
    with pytest.raises(InputError) as err:
        import_ratings(p.goal, p.store, write_jsonl(tmp_path / "r.jsonl", rows), RUBRICS)
    assert "r.jsonl:2" in str(err.value) and "r.jsonl:3" in str(err.value) and "same output" in str(err.value)
    assert stored(p) == []
    import_ratings(p.goal, p.store, write_jsonl(tmp_path / "one.jsonl", [rating(p, 0, rater="ALICE\u200b")]), RUBRICS)
    assert [r[2] for r in stored(p)] == ["alice"]


def test_an_existing_item_for_the_output_is_reused(tmp_path, project):
    p = project
    from harness.app.data import ensure_items

    (first, *_) = [it for it in ensure_items(p.store, p.goal) if it.rubric == "correctness"]
    before = len(p.store.panel_items(p.goal.goal))
    row = {"example_id": first.example_id, "candidate": first.candidate, "rater": "ann", "rubric": "correctness",
           "score": 5}
    import_ratings(p.goal, p.store, write_jsonl(tmp_path / "r.jsonl", [row]), RUBRICS)
    (r,) = p.store.ratings(p.goal.goal)
    assert r["item_id"] == first.item_id and len(p.store.panel_items(p.goal.goal)) == before


def test_csv_with_input_text_and_no_criterion_for_a_one_criterion_rubric(tmp_path, project):
    p = project
    path = tmp_path / "r.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["input", "candidate", "rater", "rubric", "score"])
        for i in range(4):
            w.writerow([f"  {p.inputs[p.ids[i]]}\n", "base", "ann", "correctness", str(i + 1)])  # quoted, two lines
    plan = import_ratings(p.goal, p.store, path, RUBRICS)
    assert len(plan.ratings) == 4
    assert stored(p) == sorted((p.ids[i], "base", "ann", "correctness", float(i + 1), None) for i in range(4))


def test_a_two_criterion_rubric_needs_the_criterion(tmp_path, project):
    p = project
    rows = [{**rating(p, 0), "rubric": "tone", "criterion": None},
            {**rating(p, 1), "rubric": "tone", "criterion": "formall"},
            {**rating(p, 2), "rubric": "tone", "criterion": "formal"}]
    with pytest.raises(InputError) as err:
        plan_import(p.goal, p.store, write_jsonl(tmp_path / "r.jsonl", rows), RUBRICS)
    (missing, typo) = err.value.problems
    assert missing.line == 1 and missing.field == "criterion" and "formal, empathetic" in missing.message
    assert typo.line == 2 and "did you mean 'formal'" in typo.message


def test_every_bad_row_is_reported_with_its_line_and_nothing_is_stored(tmp_path, project):
    p = project
    rows = [rating(p, 0),                                          # 1 good
            rating(p, 1, candidate="tuend"),                       # 2 unknown candidate
            rating(p, 2, score=7),                                 # 3 out of the 1-5 scale
            {k: v for k, v in rating(p, 3).items() if k != "rater"},  # 4 missing field
            '{"example_id": "x", "candidate": ',                   # 5 malformed JSON
            rating(p, 4, candidate="extra"),                       # 6 a candidate with no output
            rating(p, 5, score="NaN"),                             # 7 not a finite number
            {**rating(p, 6), "example_id": None, "input": "nobody wrote this"},  # 8 input matching nothing
            rating(p, 0, score=2),                                 # 9 the same rating as line 1
            {**rating(p, 7), "rubric": "tonne"},                   # 10 unknown rubric
            {**rating(p, 8), "scroe": 4}]                          # 11 unknown field
    path = write_jsonl(tmp_path / "r.jsonl", rows)
    with pytest.raises(InputError) as err:
        import_ratings(p.goal, p.store, path, RUBRICS)
    by_line = {pr.line: pr for pr in err.value.problems}
    assert sorted(by_line) == list(range(2, 12)), err.value
    assert all(pr.file == str(path) for pr in err.value.problems)
    assert by_line[2].field == "candidate" and "did you mean 'tuned'" in by_line[2].message
    assert by_line[3].field == "score" and "outside the rubric scale 1-5" in by_line[3].message
    assert by_line[4].field == "rater" and "missing" in by_line[4].message
    assert "malformed JSON" in by_line[5].message
    assert "'extra' has no output" in by_line[6].message
    assert "finite number" in by_line[7].message
    assert by_line[8].field == "input" and "matches 0 test examples" in by_line[8].message
    assert "line 1" in by_line[9].message
    assert by_line[10].field == "rubric" and "did you mean 'tone'" in by_line[10].message
    assert by_line[11].field == "scroe" and "did you mean 'score'" in by_line[11].message
    assert p.store.count("ratings") == 0 and p.store.count("panel_items") == 0


def test_reimport_is_idempotent_and_a_changed_score_updates(tmp_path, project):
    p = project
    rows = [rating(p, i, rater=r) for i in range(5) for r in ("ann", "bob")]
    path = write_jsonl(tmp_path / "r.jsonl", rows)
    import_ratings(p.goal, p.store, path, RUBRICS)
    first, items = p.store.ratings(p.goal.goal), p.store.panel_items(p.goal.goal)
    import_ratings(p.goal, p.store, path, RUBRICS)
    again = p.store.ratings(p.goal.goal)
    assert [(r["item_id"], r["rater"], r["score"], r["created_at"]) for r in again] == \
           [(r["item_id"], r["rater"], r["score"], r["created_at"]) for r in first]
    assert p.store.panel_items(p.goal.goal) == items
    rows[0]["score"] = 1
    import_ratings(p.goal, p.store, write_jsonl(tmp_path / "r.jsonl", rows), RUBRICS)
    assert len(p.store.ratings(p.goal.goal)) == 10 and (p.ids[0], "tuned", "ann", "correctness", 1.0, None) in stored(p)


def test_pairwise_rows_reuse_an_item_shown_the_other_way_round(tmp_path, project):
    from harness import panel

    p = project
    item = panel.PanelItem(panel.item_id_for("rated", p.run_id, p.ids[0], "tuned", "base", "pairwise", "helpfulness"),
                           "rated", p.run_id, p.ids[0], "tuned", "base", "pairwise", "helpfulness")
    p.store.put_panel_items("rated", [item.as_row()])
    rows = [{"example_id": p.ids[0], "candidate": "base", "other_candidate": "tuned", "rater": "ann",
             "rubric": "helpfulness", "choice": "A"},   # base better, on the item showing tuned as A
            {"example_id": p.ids[1], "candidate": "base", "other_candidate": "tuned", "rater": "ann",
             "rubric": "helpfulness", "choice": "tie"}]
    import_ratings(p.goal, p.store, write_jsonl(tmp_path / "r.jsonl", rows), RUBRICS)
    by_item = {r["item_id"]: r["choice"] for r in p.store.ratings("rated")}
    assert by_item[item.item_id] == "B" and sorted(by_item.values()) == ["B", "tie"]
    bad = [{**rows[0], "score": 3}, {**rows[0], "choice": "C"}, {**rows[0], "other_candidate": None}]
    with pytest.raises(InputError) as err:
        plan_import(p.goal, p.store, write_jsonl(tmp_path / "bad.jsonl", bad), RUBRICS)
    fields = [(pr.line, pr.field) for pr in err.value.problems]
    assert (1, "score") in fields and (2, "choice") in fields and (3, "other_candidate") in fields, fields
    # One mode a rubric: a comparison on the goal's pointwise panel rubric, or a score on a rubric
    # rated pairwise, would be averaged in with the other kind — refused at its line, nothing imported.
    mixed = [{**rows[0], "rubric": "tone", "criterion": "formal"},
             {"example_id": p.ids[0], "candidate": "base", "rater": "ann", "rubric": "helpfulness", "score": 4}]
    with pytest.raises(InputError) as err:
        import_ratings(p.goal, p.store, write_jsonl(tmp_path / "mixed.jsonl", mixed), RUBRICS)
    got = {pr.line: pr.message for pr in err.value.problems}
    assert "this goal's panel is pointwise" in got[1] and "rubric 'helpfulness' is rated pairwise" in got[2]
    assert sorted(by_item.values()) == sorted(r["choice"] for r in p.store.ratings("rated"))


def test_export_then_import_into_a_fresh_store_round_trips(tmp_path, project):
    p = project
    rows = [rating(p, i, cand, rater, score=1 + (i * 7 + len(cand) + len(rater)) % 5)
            for i in range(6) for cand in ("base", "tuned") for rater in ("ann", "bob")]
    rows += [{"example_id": p.ids[i], "candidate": "tuned", "rater": "cy", "rubric": "tone", "criterion": crit,
              "score": 4.5} for i in range(2) for crit in ("formal", "empathetic")]
    rows += [{"example_id": p.ids[2], "candidate": "tuned", "other_candidate": "base", "rater": "ann",
              "rubric": "helpfulness", "choice": "A"}]
    import_ratings(p.goal, p.store, write_jsonl(tmp_path / "r.jsonl", rows), RUBRICS)
    exported = export_rows(p.store, p.goal.goal)
    assert len(exported) == len(rows) and {"example_id", "candidate", "rater", "rubric", "criterion",
                                            "score", "output_hash"} == set(exported[0])
    fresh = run_project(tmp_path / "fresh")
    assert fresh.run_id != p.run_id and fresh.ids == p.ids
    for name in ("out.jsonl", "out.csv"):
        write_rows(exported, tmp_path / name, sys.stdout)
        db = run_project(tmp_path / f"fresh-{name}")
        import_ratings(db.goal, db.store, tmp_path / name, RUBRICS)
        assert export_rows(db.store, db.goal.goal) == exported, name


def test_a_failed_write_leaves_nothing(project):
    p = project
    item = {"item_id": "it-x", "run_id": p.run_id, "example_id": p.ids[0], "candidate": "base", "mode": "pointwise",
            "rubric": "correctness"}
    with pytest.raises(Exception):
        p.store.put_ratings_bulk(p.goal.goal, [item], [{"rater": None, "item_id": "it-x", "criterion": "correctness",
                                                        "score": 3.0}])
    assert p.store.count("panel_items") == 0 and p.store.count("ratings") == 0


def test_cli_import_export_and_exit_codes(tmp_path, project):
    p = project
    good = write_jsonl(tmp_path / "good.jsonl", [rating(p, i) for i in range(3)])
    r = harness("ratings", "import", p.goal_file, good, "--db", p.db)
    assert r.returncode == 0, r.stderr
    assert "imported 3 ratings from 1 rater for 3 outputs; goal rated" in r.stdout
    bad = write_jsonl(tmp_path / "bad.jsonl", [rating(p, 4), rating(p, 5, score=0), "not json"])
    r = harness("ratings", "import", p.goal_file, bad, "--db", p.db)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{bad}:2 [score]" in r.stderr and f"{bad}:3" in r.stderr and "2 problem(s)" in r.stderr
    assert len(p.store.ratings("rated")) == 3
    txt = tmp_path / "ratings.txt"
    txt.write_text("x")
    r = harness("ratings", "import", p.goal_file, txt, "--db", p.db)
    assert r.returncode == 2 and ".csv or .jsonl" in r.stderr and "Traceback" not in r.stderr
    r = harness("ratings", "import", p.goal_file, tmp_path / "missing.csv", "--db", p.db)
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr
    r = harness("ratings", "export", p.goal_file, "--db", p.db)
    assert r.returncode == 0, r.stderr
    assert [json.loads(line) for line in r.stdout.splitlines()] == export_rows(p.store, "rated")
    r = harness("ratings", "export", p.goal_file, tmp_path / "out.csv", "--db", p.db)
    assert r.returncode == 0 and "exported 3 rating(s) from 1 rater(s)" in r.stdout
    assert (tmp_path / "out.csv").read_text().splitlines()[0] == (
        "example_id,candidate,rater,rubric,criterion,score,output_hash")
    r = harness("ratings", "export", p.goal_file, tmp_path / "out.xlsx", "--db", p.db)
    assert r.returncode == 2 and ".csv or .jsonl" in r.stderr


def _label_studio_csv(path, p, n=4):
    """A Label Studio CSV export of tasks uploaded with example_id, candidate and output (the text
    the annotator saw, checked on import), rated with a Rating control named ``correctness``: the
    tool's own columns around the task data."""
    shown = {r["example_id"]: r["output"] for r in p.store.run_outputs(p.run_id, "tuned")}
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["annotation_id", "annotator", "candidate", "correctness", "created_at", "example_id", "id",
                    "lead_time", "output", "updated_at"])
        for i in range(n):
            w.writerow([100 + i, "ann@example.org", "tuned", str(2 + i % 3), "2024-05-01T10:00:00.000000Z", p.ids[i],
                        7 + i, "12.5", shown[p.ids[i]], "2024-05-01T10:00:12.000000Z"])
    return path


def test_an_annotation_tool_export_imports_with_extra_columns_ignored_and_named(tmp_path, project):
    p = project
    path = _label_studio_csv(tmp_path / "project-1-at-2024-05-01.csv", p)
    plan = import_ratings(p.goal, p.store, path, RUBRICS, mapping={"annotator": "rater", "correctness": "score"},
                          constants={"rubric": "correctness"})
    assert len(plan.ratings) == 4
    assert plan.ignored == ["annotation_id", "created_at", "id", "lead_time", "updated_at"]
    assert plan.note().startswith("ignored 5 columns that are not rating fields: annotation_id, created_at, id")
    assert stored(p) == sorted((p.ids[i], "tuned", "ann@example.org", "correctness", float(2 + i % 3), None)
                               for i in range(4))
    # An Argilla-style JSON Lines export: record ids, status, metadata (an object) beside the fields.
    rows = [{**rating(p, i, rater="bob"), "id": f"rec-{i}", "status": "submitted", "inserted_at": "2024-05-01",
             "metadata": {"source": "argilla", "split": "test"}, "_server_id": "9f1c"} for i in range(3)]
    plan = import_ratings(p.goal, p.store, write_jsonl(tmp_path / "argilla.jsonl", rows), RUBRICS)
    assert len(plan.ratings) == 3 and plan.ignored == ["_server_id", "id", "inserted_at", "metadata", "status"]
    assert plan.note() and "metadata" in plan.note()
    # Nothing ignored: no note.
    plan = import_ratings(p.goal, p.store, write_jsonl(tmp_path / "plain.jsonl", [rating(p, 5)]), RUBRICS)
    assert plan.ignored == [] and plan.note() == ""


def test_a_near_miss_of_a_field_is_still_an_error_and_maps_are_checked(tmp_path, project):
    from harness.ratings_io import parse_map, parse_set

    p = project
    rows = [{k: v for k, v in rating(p, 0).items() if k != "score"} | {"scores": 4}]
    with pytest.raises(InputError) as err:
        import_ratings(p.goal, p.store, write_jsonl(tmp_path / "r.jsonl", rows), RUBRICS)
    (problem,) = err.value.problems
    assert problem.field == "scores" and "did you mean 'score'" in problem.message and "--map" in problem.message
    plan = import_ratings(p.goal, p.store, write_jsonl(tmp_path / "r.jsonl", rows), RUBRICS, mapping={"scores": "score"})
    assert len(plan.ratings) == 1
    # A column mapped onto a field the file also has is given twice.
    with pytest.raises(InputError, match="given twice"):
        plan_import(p.goal, p.store, _label_studio_csv(tmp_path / "ls.csv", p), RUBRICS,
                    mapping={"annotator": "rater", "correctness": "score", "output": "rubric", "id": "rubric"})
    assert parse_map(["annotator=rater", "lead_time="]) == {"annotator": "rater", "lead_time": ""}
    assert parse_set(["rubric = tone"]) == {"rubric": "tone"}
    with pytest.raises(InputError) as err:
        parse_map(["annotator=ratr", "nonsense"])
    assert "did you mean 'rater'" in str(err.value) and "expected NAME=VALUE" in str(err.value)
    with pytest.raises(InputError, match="not a field"):
        parse_set(["rubrik=tone"])


def test_cli_import_of_a_tool_export_with_map_and_set(tmp_path, project):
    p = project
    path = _label_studio_csv(tmp_path / "export.csv", p)
    r = harness("ratings", "import", p.goal_file, path, "--db", p.db)
    assert r.returncode == 2 and "rater" in r.stderr and "missing" in r.stderr and "Traceback" not in r.stderr
    r = harness("ratings", "import", p.goal_file, path, "--db", p.db, "--map", "annotator=rater",
                "--map", "correctness=score", "--set", "rubric=correctness")
    assert r.returncode == 0, r.stderr
    assert "imported 4 ratings from 1 rater for 4 outputs" in r.stdout
    assert "ignored 5 columns that are not rating fields: annotation_id, created_at, id, lead_time, " \
           "updated_at" in r.stdout
    r = harness("ratings", "import", p.goal_file, path, "--db", p.db, "--map", "annotator")
    assert r.returncode == 2 and "expected NAME=VALUE" in r.stderr and "Traceback" not in r.stderr


def test_a_rating_of_an_output_the_candidate_no_longer_gives_is_refused(tmp_path, project):
    """A row that says which output it rated (``output`` text or ``output_hash``, as export
    writes) attaches only to a run that gave that text: ratings made on an old output must not
    count for the new one a later run gives in its place."""
    from harness.ratings_io import output_hash

    p = project
    outputs = {(r["candidate"], r["example_id"]): r["output"] for r in p.store.run_outputs(p.run_id)}
    good = rating(p, 0, "tuned", output=outputs[("tuned", p.ids[0])])
    stale = rating(p, 1, "tuned", rater="bob", output_hash=output_hash("an answer this store never saw"))
    pair = {"example_id": p.ids[2], "candidate": "tuned", "other_candidate": "base", "rater": "ann",
            "rubric": "helpfulness", "choice": "A", "other_output": "not base's output"}
    both = {**pair, "example_id": p.ids[3], "output": outputs[("tuned", p.ids[3])]}
    with pytest.raises(InputError) as err:
        plan_import(p.goal, p.store, write_jsonl(tmp_path / "r.jsonl", [good, stale, pair, both]), RUBRICS)
    got = {pr.line: pr.message for pr in err.value.problems}
    assert set(got) == {2, 3, 4} and "names both outputs" in got[3]
    assert "no longer gives here" in got[2] and "no longer gives here" in got[4]
    assert output_hash("two\r\nlines \n") == output_hash("two\nlines")  # as a spreadsheet cell gives it back
    bad_hash = rating(p, 1, "tuned", output_hash="xyz")
    with pytest.raises(InputError, match="not an output hash"):
        plan_import(p.goal, p.store, write_jsonl(tmp_path / "h.jsonl", [bad_hash]), RUBRICS)
    plan = import_ratings(p.goal, p.store, write_jsonl(tmp_path / "ok.jsonl", [good]), RUBRICS)
    assert len(plan.ratings) == 1 and plan.ratings[0].item.run_id == p.run_id
    exported = export_rows(p.store, p.goal.goal)
    assert exported[0]["output_hash"] == output_hash(outputs[("tuned", p.ids[0])])

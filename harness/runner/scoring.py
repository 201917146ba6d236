"""Outputs to results: metrics, the judge, human ratings, and verdicts per criterion."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from harness.metric_names import is_human_metric, parse_metric_name
from harness.runner.context import FLUSH_EVERY, LABEL_METRICS, Outputs, Run


# --------------------------------------------------------------------------- scoring

RUBRIC_BOUNDS = (1.0, 5.0)  # every rubric criterion is scored on 1-5 (harness.judge.rubric)


def metric_args(run: Run, name: str) -> tuple[str, dict[str, Any]]:
    """The registered metric and its arguments behind a metric name used in the goal."""
    spec = run.goal.metric_spec(name)
    base, args = (spec.metric, dict(spec.args)) if spec else (name, {})
    for c in run.goal.success:
        if c.metric == name and c.args:
            args = {**c.args, **args}
    if base in LABEL_METRICS and run.labels and "labels" not in args:
        args["labels"] = run.labels
    return base, args


def score_candidate(run: Run, outputs: Outputs, names: list[str]) -> dict[str, Any]:
    """The candidate's computed metrics, on the test examples it has an output for: a failed
    generation is left out (``extra["generation_failed"]`` counts them), never scored as an
    empty answer. Nothing when every generation failed."""
    from harness.metrics import METRICS, compute_metric

    ok = outputs.succeeded()
    if not ok:
        return {}
    examples, texts = [run.prepared.test[i] for i in ok], [outputs.texts[i] for i in ok]
    retrieved = None if outputs.retrieved is None else [outputs.retrieved[i] for i in ok]
    results = {}
    for name in names:
        if parse_metric_name(name).rated:
            continue
        base, args = metric_args(run, name)
        if base in METRICS and METRICS.meta(base).get("needs_retrieval"):
            args["retrieved"] = retrieved  # passage ids per example; None: it retrieves nothing
        res = compute_metric(base, texts, examples, **args)
        res.name = name
        res.extra["ids"] = [ex.id for ex in examples]  # pairing is checked by example
        if outputs.failed:
            res.extra["generation_failed"] = len(outputs.failed)
        results[name] = res
    return results


def make_run_judge(run: Run) -> tuple[Any, str]:
    """(the goal's judge, the pairwise baseline). A local judge's ``spec`` carries its model's
    content hash, so judgments are cached by what judged them; the model itself loads only when
    a judgment is not stored yet."""
    from harness.judge.judge import make_judge

    spec = run.goal.judge
    opts = dict(spec.model_extra or {})
    baseline = opts.pop("baseline", None) or "reference"  # pairwise: compared with this candidate
    if spec.model.startswith("local:"):
        from harness.backends.local import local_model_id

        local_spec = spec.model.split(":", 1)[1] or "default"
        model_spec = None if local_spec == "default" else local_spec
        placement = run.placement(spec.device, spec.dtype)
        judge = make_judge(spec.model, model=_LazyModel(lambda: run.local_model(model_spec, None, placement)), **opts)
        # float32 adds nothing: judgments stored before other precisions existed are found
        judge.spec = f"{spec.model}#{local_model_id(model_spec)[:16]}" + (f"@{placement.tag}" if placement.tag else "")
    else:
        if run.goal.data.scrub_pii:
            from harness.data.pii import scrub_text

            opts.setdefault("scrub", lambda text: scrub_text(text)[0])
        judge = make_judge(spec.model, **opts)
    return judge, baseline


def judge_candidates(run: Run, outputs: dict[str, Outputs]) -> dict[str, dict[str, Any]]:
    """``judge.<rubric>`` (and per criterion) MetricResults per candidate, judgments cached."""
    from harness.judge.judge import JudgeItem, Judgment, metric_scores, pair_values, position_bias_rate, win_rate
    from harness.judge.rubric import load_rubric
    from harness.metrics import from_values

    spec = run.goal.judge
    if spec is None or not spec.rubrics:
        return {}
    judge, baseline = make_run_judge(run)
    test = run.prepared.test
    out: dict[str, dict[str, Any]] = {}
    spend: dict[str, float] = {}  # what the judgments of each candidate cost (stored ones too)
    for rubric_name in spec.rubrics:
        rubric = load_rubric(rubric_name, run.rubrics_dir)
        cached = {key: _judgment_from_row(Judgment, r) for key, r in run.store.judgments_by(judge.spec,
                                                                                             rubric.hash).items()}
        names = [f"judge.{rubric.name}"] + [f"judge.{rubric.name}.{c}" for c in rubric.criterion_names]
        for cname, outs in outputs.items():
            if spec.mode == "pairwise" and cname == baseline:
                continue  # the baseline is what the others are compared with
            other = outputs[baseline] if spec.mode == "pairwise" and baseline != "reference" else None
            ids, items = _judge_items(run, JudgeItem, outs, other, spec.mode == "pairwise")
            if not items:
                continue  # every generation failed: nothing to judge
            pairs, judgments = _ask_judge(run, judge, rubric, cname, items, cached, spec.mode == "pairwise")
            spend[cname] = spend.get(cname, 0.0) + _count_judgments(run, cname, rubric.name, judgments, cached)
            for j in judgments:
                if j.error is None:
                    cached.setdefault(j.key, j)
            run.store.put_judgments([], [(run.run_id, cname, j.example_id, rubric.name, j.criterion, j.order or "-",
                                          j.key) for j in judgments])
            for metric in names:
                if spec.mode == "pairwise":
                    crit = parse_metric_name(metric).criterion
                    chosen = [p for p in pairs if crit is None or p.criterion == crit]
                    per = pair_values(chosen)
                    extra = {"ids": ids, "baseline": baseline, "position_bias_rate": position_bias_rate(chosen),
                             "win_rate": win_rate(chosen), "bounds": (0.0, 1.0)}
                else:
                    per, extra = metric_scores(metric, judgments), {"ids": ids, "bounds": RUBRIC_BOUNDS}
                extra["failed"] = sum(per.get(i) is None for i in ids)  # unparseable or errored judgments
                if len(ids) < len(test):
                    extra["generation_failed"] = len(test) - len(ids)  # outputs (or the baseline's) that failed
                out.setdefault(cname, {})[metric] = from_values(metric, [per.get(i) for i in ids], extra=extra)
    for cname, usd in spend.items():
        run.store.update_candidate(run.run_id, cname, judge_cost_usd=usd)
    return out


def _judge_items(run: Run, item: Any, outs: Outputs, base: Outputs | None, pairwise: bool
                 ) -> tuple[list[str], list[Any]]:
    """(example ids, judge items) of one candidate's outputs: the examples it has an output for
    (and, pairwise against another candidate, that one too); a failed generation is never judged."""
    test = run.prepared.test
    ok = [i for i in outs.succeeded() if base is None or i not in base.failed]
    if pairwise:
        others = [ex.reference for ex in test] if base is None else base.texts
        items = [item(test[i].id, test[i].input_text, outs.texts[i], test[i].reference, others[i]) for i in ok]
    else:
        items = [item(test[i].id, test[i].input_text, outs.texts[i], test[i].reference) for i in ok]
    return [test[i].id for i in ok], items


def _ask_judge(run: Run, judge: Any, rubric: Any, cname: str, items: list[Any], cached: dict[str, Any],
               pairwise: bool) -> tuple[list[Any], list[Any]]:
    """(pairs, judgments) of one candidate's outputs on one rubric: what is not ``cached`` is asked,
    stored every few judgments as they come, with a progress bar per judgment asked."""
    from harness.judge.judge import run_pairwise, run_pointwise
    from harness.progress import bar

    new: list[Any] = []
    progress = bar(f"{cname}: judging {rubric.name}", None, unit="judgments", enabled=run.progress)

    def on_result(j: Any) -> None:
        new.append(j)
        progress.advance(1)
        if len(new) >= FLUSH_EVERY:
            _store_judgments(run, new)
            new.clear()

    with progress:
        if pairwise:
            pairs, judgments = run_pairwise(judge, rubric, items, cached=cached, on_result=on_result,
                                            on_start=progress.set_total)
        else:
            pairs, judgments = [], run_pointwise(judge, rubric, items, cached=cached, on_result=on_result,
                                                 on_start=progress.set_total)
    _store_judgments(run, new)
    return pairs, judgments


def _count_judgments(run: Run, cname: str, rubric: str, judgments: Sequence[Any], cached: dict[str, Any]) -> float:
    """New, reused and failed judgments into the run's counts (failures are printed); returns
    what the judgments cost."""
    failures = [j for j in judgments if j.error is not None]
    reused = {j.key for j in judgments} & set(cached)
    run.counts["judged"] += len(judgments) - len(reused) - len(failures)  # new successful judgments
    run.counts["judgments_reused"] += len(reused)
    if failures:
        run.counts["judgments_failed"] += len(failures)
        run.say(f"  [yellow]{cname}[/]: {len(failures)} of {len(judgments)} {rubric} judgments failed "
                f"(stored as failures, asked again next run); first: {failures[0].error}")
    return sum(float(j.cost_usd or 0.0) for j in judgments)


class JudgePlan:
    """Counts the judgments a candidate still needs, for the plan. Exact for a pointwise judge
    once all the candidate's outputs are stored (they decide the keys); otherwise an upper
    bound. The judge and the stored judgment keys are looked up once per plan."""

    def __init__(self, run: Run):
        from harness.judge.rubric import load_rubric

        self.run = run
        self.rubrics = [load_rubric(r, run.rubrics_dir) for r in run.goal.judge.rubrics] if run.goal.judge else []
        self._stored: tuple[str, dict[str, set[str]]] | None = None
        self._made: tuple[Any, str] | None = None

    def _stored_keys(self) -> tuple[str, dict[str, set[str]]]:
        if self._stored is None:
            judge, _ = self._judge()
            self._stored = (judge.spec, {r.hash: self.run.store.judgment_keys(judge.spec, r.hash)
                                         for r in self.rubrics})
        return self._stored

    def _judge(self) -> tuple[Any, str]:
        if self._made is None:
            self._made = make_run_judge(self.run)  # builds no model and sends nothing
        return self._made

    def step(self, cand: Any, part: Any) -> Any:
        from harness.judge.judge import judgment_key
        from harness.runner.context import Step

        spec, run, rubrics = self.run.goal.judge, self.run, self.rubrics
        per_example = sum(len(r.criterion_names) for r in rubrics) * (2 if spec.mode == "pairwise" else 1)
        total = len(run.prepared.test) * per_example
        if not part.outputs_known or spec.mode == "pairwise":
            outputs = [part.stored[k]["output"] or "" for k in part.keys] if part.outputs_known else None
            return self._priced(Step(cand.name, cand.kind, "judge", total, 0, note=f"{spec.model}; up to"), outputs)
        judge_spec, have = self._stored_keys()
        done, left = 0, []
        for rubric in rubrics:
            for ex, key in zip(run.prepared.test, part.keys):
                output = part.stored[key]["output"] or ""
                stored = sum(judgment_key(judge_spec, rubric.hash, c, ex.input_text, output, None,
                                          reference=ex.reference) in have[rubric.hash]
                             for c in rubric.criterion_names)
                done += stored
                left += [output] * (stored < len(rubric.criterion_names))
        return self._priced(Step(cand.name, cand.kind, "judge", total - done, done, note=spec.model), left or None)

    def _priced(self, step: Any, outputs: list[str] | None) -> Any:
        """``step`` with the list-price cost of its judgments when the judge is an API model:
        the judge prompts rendered on the stored outputs (or, before there are any, on outputs
        of ``max_new_tokens``), ~1.4 tokens a word in, up to the judge's ``max_tokens`` out."""
        from harness.judge.judge import is_external
        from harness.judge.prompt import pairwise_messages, pointwise_messages

        judge, _ = self._judge()
        if not step.todo or not is_external(judge):
            return step
        from harness.backends.api import estimate_cost

        test = self.run.prepared.test[:50]  # the prompts' length is an average: a sample does
        filler = " ".join(["word"] * int(self.run.goal.decoding.max_new_tokens / 1.4))
        texts = (outputs or [filler] * len(test))[:50]
        words = []
        for rubric in self.rubrics:
            crit = rubric.criterion_names[0]
            for ex, out in zip(test, texts):
                msgs = (pairwise_messages(rubric, crit, ex.input_text, out, out, reference=ex.reference)
                        if self.run.goal.judge.mode == "pairwise" else
                        pointwise_messages(rubric, crit, ex.input_text, out, reference=ex.reference))
                words.append(len(" ".join(m["content"] for m in msgs).split()))
        estimate = estimate_cost(judge.config, step.todo, 1.4 * sum(words) / len(words), judge.max_tokens)
        step.est_cost_usd = float(estimate)
        step.note += "; " + (estimate.note or f"list price; ~1.4 tokens a word, up to {judge.max_tokens} out")
        return step


class _LazyModel:
    """Stands in for a LocalModel until a judgment actually needs it."""

    def __init__(self, load: Callable[[], Any]):
        self._load = load

    def next_token_probs(self, *args: Any, **kwargs: Any) -> Any:
        return self._load().next_token_probs(*args, **kwargs)


def _judgment_from_row(cls: Any, row: dict[str, Any]) -> Any:
    return cls(key=row["cache_key"], judge=row["judge"], rubric=row["rubric"], rubric_hash=row["rubric_hash"],
               criterion=row["criterion"], mode=row["mode"], order=row["order"], score=row["score"],
               winner=row["winner"], rationale=row["rationale"] or "", raw=row["raw"] or "",
               attempts=row["attempts"] or 0, error=row["error"], input_tokens=row.get("input_tokens") or 0,
               output_tokens=row.get("output_tokens") or 0, cost_usd=row.get("cost_usd") or 0.0)


def _store_judgments(run: Run, judgments: Sequence[Any]) -> None:
    if judgments:
        run.store.put_judgments([{**j.to_dict(), "cache_key": j.key} for j in judgments])


def human_results(run: Run, names: Sequence[str], candidates: Sequence[str],
                  outputs: dict[str, Outputs] | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """``human.<rubric>[.<criterion>]`` MetricResults from the panel's ratings, once enough exist:
    with ``outputs`` (this run's), only ratings of the very texts the candidates produced now —
    a rating of an output the candidate no longer gives says nothing about it."""
    wanted = [n for n in names if is_human_metric(n)]
    if not wanted or run.goal.human is None:
        return {}, {}
    from harness import panel

    ratings = run.store.ratings(run.goal.goal)
    items = panel.goal_items(run.store, run.goal)
    if outputs is not None:
        items = panel.items_showing(items, panel.shown_texts(run.store, items), _texts_now(run, outputs))
    need = run.goal.human.min_ratings
    out: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    for name in wanted:
        results = panel.human_results(ratings, items, name)  # the app's rule too
        for cand in candidates:
            res = results.get(cand)
            n = res.extra["n_ratings"] if res is not None else 0
            if res is None or n < need or res.n < 2:
                missing[f"{cand}/{name}"] = f"{n} of {need} human ratings so far; {max(need - n, 0)} more needed"
                continue
            out.setdefault(cand, {})[name] = res
    return out, missing


def judge_labels(run: Run, outputs: dict[str, Outputs]) -> dict[str, dict[str, dict[str, float]]] | None:
    """{candidate: {judge metric: {example_id: human value}}} for PPI: the human panel's mean
    rating of an output, kept only where the rated output is the very text the judge scored in
    this run. Pointwise panels and judges only (pairwise win rates are another quantity): None
    where labels do not apply."""
    from harness.metric_names import is_judge_metric

    goal = run.goal
    wanted = [c.metric for c in goal.success if is_judge_metric(c.metric) and not c.relative_op]
    if goal.human is None or goal.judge is None or goal.judge.mode == "pairwise" or not wanted:
        return None
    from harness import panel

    rubrics = {str(parse_metric_name(m).rubric) for m in wanted}
    items = panel.goal_items(run.store, goal)
    if any(it.mode == panel.PAIRWISE for it in items if it.rubric in rubrics):
        return None
    if not items:
        return {}
    ratings = run.store.ratings(goal.goal)
    now = _texts_now(run, outputs)
    items = panel.items_showing(items, panel.shown_texts(run.store, items), now)  # the texts the judge scored
    out: dict[str, dict[str, dict[str, float]]] = {}
    for metric in wanted:
        parsed = parse_metric_name(metric)
        per = panel.ratings_by_output(ratings, items, str(parsed.rubric), parsed.criterion)
        for cand in outputs:
            kept = {e: vals for (c, e), vals in per.items() if c == cand and (cand, e) in now}
            if kept:
                same = Labels({e: sum(v for _r, v in vals) / len(vals) for e, vals in sorted(kept.items())})
                same.raters = len({r for vals in kept.values() for r, _v in vals})
                out.setdefault(cand, {})[metric] = same
    return out


def _texts_now(run: Run, outputs: dict[str, Outputs]) -> dict[tuple[str, str], str]:
    """(candidate, example id) → the text the candidate gives in this run (a failed generation has none)."""
    ids = [ex.id for ex in run.prepared.test]
    return {(cand, ids[i]): outs.texts[i] for cand, outs in outputs.items() for i in outs.succeeded()}


class Labels(dict):
    """Human labels of a candidate's outputs (example id → the panel's mean), with how many
    raters gave them: one rater's leniency would shift PPI's correction by all of it."""

    raters: int = 0


# --------------------------------------------------------------------------- verdicts


def decide_verdicts(run: Run, results: dict[str, dict[str, Any]], missing: dict[str, str],
                    costs: dict[str, float] | None = None,
                    labels: dict[str, dict[str, dict[str, float]]] | None = None):
    """Verdicts per candidate (aligned with ``goal.success``), who meets the goal, and the best
    candidate (highest mean margin; ties go to the cheaper one). The confidence of each
    candidate's intervals comes from the goal's multiplicity rule (``harness.multiplicity``).
    ``labels`` (:func:`judge_labels`) turn a judge criterion into a PPI++ one."""
    from harness.multiplicity import decide_family, family_size
    from harness.verdict import best_candidate, meets_goal

    goal = run.goal
    trust = judge_trust(run)
    results = {cand: _with_labels(per, (labels or {}).get(cand, {})) for cand, per in results.items()}

    def decide(cand: str, confidence: float, rule: str) -> list:
        rated = (labels or {}).get(cand, {}) if labels is not None else None
        return [_with_trust(_criterion_verdict(c, cand, results, missing, confidence, rule), trust, rated)
                for c in goal.success]

    verdicts = decide_family(list(results), decide, goal.confidence, goal.multiplicity,
                             family_size(goal.candidates, results))
    meets = {cand: meets_goal(vs) for cand, vs in verdicts.items()}
    best = best_candidate(verdicts, costs or {})
    return verdicts, meets, best


def _with_labels(per: dict[str, Any], labels: dict[str, dict[str, float]]) -> dict[str, Any]:
    """A candidate's results with human labels attached to the judge metrics that have enough
    of them for PPI (``intervals.MIN_N`` rated outputs); the stored results stay as they were."""
    import copy

    from harness.intervals import MIN_N

    out = dict(per)
    for metric, rated in labels.items():
        res = per.get(metric)
        if res is None:
            continue
        res = copy.copy(res)
        if getattr(rated, "raters", 2) < 2:
            res.extra = {**res.extra, "ppi_one_rater": len(rated)}
        elif len(rated) >= MIN_N:
            res.extra = {**res.extra, "human_labels": rated}
        else:
            res.extra = {**res.extra, "ppi_short": len(rated)}
        out[metric] = res
    return out


def judge_trust(run: Run) -> dict[str, Any]:
    """Per judge metric (``judge.<rubric>`` and ``judge.<rubric>.<criterion>``) the judge-vs-human
    agreement row from the panel's ratings; empty when there is no panel or no judge criterion."""
    from harness.metric_names import is_judge_metric

    if run.goal.human is None or not any(is_judge_metric(c.metric) for c in run.goal.success):
        return {}
    from harness.agreement import panel_report

    out: dict[str, Any] = {}
    for row in panel_report(run.store, run.goal, run.rubrics_dir)["judge_vs_human"]:
        out[f"judge.{row['rubric']}.{row['criterion']}"] = row
        prev = out.get(f"judge.{row['rubric']}")
        if prev is None or row["trusted"] is False:
            out[f"judge.{row['rubric']}"] = row  # a rubric's mean is only as good as its worst criterion
    return out


def _with_trust(verdict: Any, trust: dict[str, Any], rated: dict[str, Any] | None = None) -> Any:
    """A judge criterion cannot pass on a judge the human panel disagrees with; one no human has
    checked says so — and so does one the panel checked on other candidates' outputs only
    (``rated``: this candidate's human labels per judge metric; a tuned model can game a judge
    on exactly the outputs nobody rated)."""
    from harness.metric_names import is_judge_metric
    from harness.verdict import INCONCLUSIVE, PASS

    if not is_judge_metric(verdict.metric):
        return verdict
    row = trust.get(verdict.metric)
    verdict.judge_validated = bool(row is not None and row.get("trusted") is True)
    unrated = (rated is not None and verdict.op in ("at_least", "at_most") and not rated.get(verdict.metric))
    if verdict.judge_validated and unrated:
        verdict.judge_validated = False
        verdict.detail += "; judge not validated on this candidate: humans rated other candidates' outputs only"
    elif row is None or row.get("trusted") is None:
        verdict.detail += "; judge not validated against humans"
    elif row["trusted"] is False:
        kappa = row.get("kappa")
        why = (f"the judge disagrees with the human panel on {row['criterion']} (weighted kappa "
               f"{kappa:.2f} over {row['n']} outputs, below the goal's agreement threshold)")
        if verdict.status == PASS:
            verdict.status = INCONCLUSIVE
            verdict.detail += f"; cannot pass: {why}"
        else:
            verdict.detail += f"; {why}"
    return verdict


def _criterion_verdict(c: Any, cand: str, results: dict[str, dict[str, Any]], missing: dict[str, str],
                       confidence: float, rule: str) -> Any:
    """One criterion of one candidate at ``confidence`` (``rule`` names how it was set)."""
    from harness import panel
    from harness.intervals import ONE_RATER
    from harness.verdict import INCONCLUSIVE, Verdict, judge_criterion

    def undecided(why: str) -> Verdict:
        return Verdict(c.metric, INCONCLUSIVE, float("nan"), (float("nan"), float("nan")), float(c.threshold),
                       c.baseline, None, why, c.op, c.relative_op, "", confidence, rule)

    res = full = results[cand].get(c.metric)
    if res is None:
        return undecided(missing.get(f"{cand}/{c.metric}", "no value"))
    total = res.n + int(res.extra.get("generation_failed", 0))  # the test examples, failed outputs too
    base = base_full = None
    if c.relative_op:
        base = base_full = results.get(c.baseline, {}).get(c.metric)
        if base is None:
            return undecided(f"baseline {c.baseline!r} has no {c.metric} in this run")
        if any(r.extra.get("ratings") and panel.rater_count(r) < 2 for r in (res, base)):
            return undecided(f"{ONE_RATER} (a side)")  # as for an absolute human criterion
        res, base = _on_shared_examples(res, base)
        if res is None or base is None:
            return undecided("candidate and baseline were scored on different examples")
        if not res.n:
            return undecided(f"no test example has an output from both this candidate and {c.baseline!r} "
                             f"(their generations failed)")
    verdict = judge_criterion(c.metric, c.op, getattr(c, c.op), res, base, c.baseline, confidence, seed=0,
                              multiplicity=rule)
    _too_few_labels(verdict, res)
    _count_failed(verdict, res, base, total - res.n, f" (here or in {c.baseline})" if base is not None else "")
    if base is not None:
        _worst_case_paired(verdict, c, full, base_full, total, confidence, rule)
    if base is not None and _binary(res) and _binary(base):
        from harness.stats import mcnemar

        m = mcnemar([v == 1.0 for v in res.per_example], [v == 1.0 for v in base.per_example])
        verdict.detail += (f"; McNemar ({m.method}) p = {m.p_value:.3g} "
                           f"({m.only_a} right only here, {m.only_b} only in {c.baseline})")
    return verdict


def _too_few_labels(verdict: Any, res: Any) -> None:
    """Humans rated some of a candidate's outputs, too few (under ``MIN_N``) or all by one rater, to
    correct the judge by them (PPI): the judge alone cannot pass, since those ratings may show it
    biased (a +1 judge passed), and one rater's leniency would be taken for the judge's bias."""
    from harness.intervals import MIN_N
    from harness.verdict import INCONCLUSIVE, PASS

    one, short = res.extra.get("ppi_one_rater"), res.extra.get("ppi_short")
    if not (one or short):
        return
    verdict.detail += (f"; {one} of this candidate's outputs have human ratings, all from one rater, whose leniency "
                       f"PPI would take for the judge's bias" if one else
                       f"; {short} of this candidate's outputs have human ratings, PPI needs {MIN_N} to correct the "
                       f"judge by them")
    if verdict.status == PASS:
        verdict.status = INCONCLUSIVE
        verdict.detail += (": not decided until a second rater rates them" if one else
                           f": not decided until {MIN_N - short} more are rated")


# Above this share of the test examples left out by failures (generations that failed after their
# retries, unparseable or errored judgments) a criterion is not decided: what fails is rarely a
# random sample of the examples.
MAX_FAILED_SHARE = 0.05


def _count_failed(verdict: Any, res: Any, base: Any, left_out: int = 0, where: str = "") -> None:
    """Failed judgments (of ``res``'s examples) and failed generations (``left_out`` test examples
    with no output, ``where`` says on which side) count: each said in the detail, and above
    MAX_FAILED_SHARE of the test examples together, undecided."""
    from harness.verdict import INCONCLUSIVE

    failed = _failed_judgments(res, base)
    if not failed and not left_out:
        return
    total = res.n + left_out
    if left_out:
        verdict.detail += f"; {left_out} of {total} outputs failed to generate{where} and are left out"
    if failed:
        verdict.detail += f"; {failed} of {res.n} judgments failed and are left out"
    if (failed + left_out) / max(total, 1) > MAX_FAILED_SHARE and verdict.status != INCONCLUSIVE:
        verdict.status = INCONCLUSIVE
        verdict.detail += f" (more than {MAX_FAILED_SHARE:.0%} of the test examples: not decided)"
    elif base is None:
        _worst_case_pass(verdict, res, left_out + failed)


def _failed_judgments(res: Any, base: Any) -> int:
    """The examples a judgment failed on, on either side of a pair together (an example lost to the
    candidate's failure and another to the baseline's are two lost pairs, not one)."""
    counts = [int(r.extra.get("failed", 0)) for r in (res, base) if r is not None]
    if base is None or not all(counts) or None in (res.extra.get("ids"), base.extra.get("ids")):
        return max(counts)
    lost = {i for r in (res, base) for i, v in zip(r.extra["ids"], r.per_example) if v is None}
    return max(len(lost), *counts)


def _worst_case_pass(verdict: Any, res: Any, missing: int) -> None:
    """An absolute pass holds only if it holds with the ``missing`` examples (failed outputs and
    failed judgments) counted as the unfavourable outcome: wrong (or a hit, for at_most) on a
    proportion, the scale's worst end on a bounded score (a 1–5 judge score: 1 for at_least, 5
    for at_most). What fails is rarely a random sample, and leaving it out could lift the estimate
    by up to the share left out."""
    from harness.intervals import clopper_pearson
    from harness.verdict import INCONCLUSIVE, PASS

    if not missing or verdict.status != PASS or verdict.op not in ("at_least", "at_most"):
        return
    at_most = verdict.op == "at_most"
    if _binary(res):
        hits, n = int(sum(v == 1.0 for v in res.per_example)), sum(v is not None for v in res.per_example)
        lo, hi = clopper_pearson(hits + (missing if at_most else 0), n + missing, verdict.confidence or 0.95)
        worst = "hits" if at_most else "wrong"
    else:
        bounds = res.extra.get("bounds")
        if bounds is None:
            return  # no scale to fill from
        # The verdict's own bound on the mean of the n it rests on, moved as the missing ones at the
        # scale's worse end would move the mean of all n + missing (a bootstrap of the filled values
        # would not do: 39 fours and one 1 has resamples without spread, and no bound at all).
        fill = float(bounds[1] if at_most else bounds[0])
        n = sum(v is not None for v in res.per_example) if not {"human_labels", "ratings"} & set(res.extra) \
            else int(res.n)
        lo, hi = ((n * float(b) + missing * fill) / (n + missing) for b in verdict.ci)
        worst = f"{fill:g}"
    bound = hi if at_most else lo
    if not (bound <= verdict.threshold if at_most else bound >= verdict.threshold):
        verdict.status = INCONCLUSIVE
        verdict.detail += (f"; counting the {missing} failed output(s) or judgment(s) as {worst}, the "
                           f"{'upper' if at_most else 'lower'} bound is {bound:.4g}: not decided")


def _worst_case_paired(verdict: Any, c: Any, res: Any, base: Any, total: int, confidence: float, rule: str) -> None:
    """A relative pass holds only if it holds with every failed output and judgment counted
    against the candidate, on all ``total`` test examples: its own as the unfavourable outcome
    (wrong, or a hit for ``reduce_by``, on a proportion; the scale's worse end on a bounded score),
    the baseline's as the favourable one — as :func:`_worst_case_pass` does for an absolute
    criterion. Paired only on the examples both have, a candidate whose failures fell on the
    examples the baseline does well on passed."""
    from harness.metrics import from_values
    from harness.verdict import INCONCLUSIVE, PASS, judge_criterion

    if verdict.status != PASS or None in (res.extra.get("ids"), base.extra.get("ids")):
        return
    if _binary(res) and _binary(base):
        lo, hi, extra = 0.0, 1.0, {}
    elif res.extra.get("bounds") and not {"human_labels", "ratings"} & (set(res.extra) | set(base.extra)):
        lo, hi = (float(x) for x in res.extra["bounds"])
        extra = {"bounds": res.extra["bounds"]}
    else:
        return  # no scale to fill from (or a PPI / panel interval, which filled values are not)
    bad, good = (lo, hi) if c.op == "improve_by" else (hi, lo)
    mine = {e: v for e, v in zip(res.extra["ids"], res.per_example) if v is not None}
    theirs = {e: v for e, v in zip(base.extra["ids"], base.per_example) if v is not None}
    both = len(set(mine) & set(theirs))
    if both >= total:
        return
    ids = list(dict.fromkeys([*res.extra["ids"], *base.extra["ids"]]))
    ids += [f"<failed on both sides {k}>" for k in range(max(0, total - len(ids)))]
    cand = from_values(res.name, [mine.get(e, bad) for e in ids], extra={"ids": ids, **extra})
    ref = from_values(base.name, [theirs.get(e, good) for e in ids], extra={"ids": ids, **extra})
    worst = judge_criterion(c.metric, c.op, getattr(c, c.op), cand, ref, c.baseline, confidence, seed=0,
                            multiplicity=rule)
    if worst.status != PASS:
        verdict.status = INCONCLUSIVE
        verdict.detail += (f"; counting the {total - both} failed output(s) or judgment(s) against this candidate "
                           f"({bad:g} here, {good:g} in {c.baseline}) the interval is "
                           f"[{worst.ci[0]:.4g}, {worst.ci[1]:.4g}]: not decided")


def _on_shared_examples(res: Any, base: Any) -> tuple[Any, Any]:
    """Candidate and baseline on the examples both have an output for, when a generation failed on
    either side (a relative criterion pairs example by example); (None, None) when they were scored
    on different examples for another reason."""
    a, b = res.extra.get("ids"), base.extra.get("ids")
    if a == b and res.n == base.n:
        return res, base
    failures = res.extra.get("generation_failed") or base.extra.get("generation_failed")
    if not failures or a is None or b is None or len(a) != res.n or len(b) != base.n:
        return None, None
    shared = set(b)
    keep = [e for e in a if e in shared]
    return _on_examples(res, keep), _on_examples(base, keep)


def _on_examples(res: Any, ids: list[str]) -> Any:
    """A copy of ``res`` on the examples ``ids`` only: its rows of statistics (what every interval
    resamples) and per-example values, the value recomputed from them."""
    import copy

    row = {e: i for i, e in enumerate(res.extra["ids"])}
    rows = [row[e] for e in ids]
    out = copy.copy(res)
    out.stats = res.stats[rows]
    out.per_example = [res.per_example[i] for i in rows] if len(res.per_example) == res.n else []
    out.value = float(res.aggregate(out.stats.sum(axis=0))) if rows else float("nan")
    out.extra = {**res.extra, "ids": list(ids)}
    if "failed" in res.extra:  # failed judgments among the examples kept
        out.extra["failed"] = sum(v is None for v in out.per_example)
    return out


def _binary(res: Any) -> bool:
    """Per-example 0/1 outcomes (accuracy, checks): McNemar applies to a paired comparison."""
    return bool(res.per_example) and all(v in (0.0, 1.0) for v in res.per_example)

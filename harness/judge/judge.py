"""LLM-as-a-judge: pointwise scores and pairwise comparisons, cached by content.

Judges come from :func:`make_judge` specs (``openai:MODEL``, ``anthropic:MODEL``,
``openai-compatible:MODEL@BASE_URL``, ``local:default`` / ``local:PATH``, ``scripted:``).

* Text judges (API, scripted) answer strict JSON; an unparseable reply gets a corrective
  turn, at most ``parse_retries`` times (default 2), and every raw reply is kept.
* Local judges are read G-Eval style: the score is the probability-weighted mean over the
  next-token candidates "1".."5", so they never fail to parse. Pairwise they compare
  p("A") with p("B"); a gap under ``tie_margin`` is a tie.
* Pairwise judging always runs both orders (A=candidate/B=baseline and the swap). Winners
  are mapped back to candidate/baseline; if the orders disagree the pair is a tie, and
  a pair whose two verdicts picked the same *position* counts towards the position-bias rate.

Every judgment has a key (:func:`judgment_key`) from the content that decides it; the runner
passes earlier judgments as ``cached`` and only new keys are sent to the judge.
"""
from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterable

from harness.cache import json_digest
from harness.errors import HarnessError
from harness.judge.prompt import (
    PROMPT_VERSION,
    ReplyFormatError,
    correction_message,
    escape_data,
    pairwise_messages,
    parse_pairwise_reply,
    parse_pointwise_reply,
    pointwise_messages,
)
from harness.judge.rubric import SCALE, Rubric
from harness.metric_names import parse_metric_name
from harness.registry import Registry

SCORE_TOKENS = [str(k) for k in SCALE]
PAIR_TOKENS = ["A", "B"]


# --- data ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class JudgeItem:
    """One thing to judge: ``output`` answers ``input``; ``other_output`` is what it is compared with
    in pairwise mode (a baseline candidate's output, or the reference)."""

    example_id: str
    input: str
    output: str
    reference: str | None = None
    other_output: str | None = None


@dataclass
class Judgment:
    """One judge verdict on one criterion (pairwise: one order)."""

    key: str
    judge: str
    rubric: str
    rubric_hash: str
    criterion: str
    mode: str                      # "pointwise" | "pairwise"
    order: str | None              # "AB" (A=candidate) | "BA" (A=baseline) | None
    score: float | None            # pointwise: 1-5 (local judges: an expectation)
    winner: str | None             # pairwise: "cand" | "base" | "tie"
    rationale: str
    raw: str                       # the last raw reply (local judges: the probabilities as JSON)
    attempts: int                  # replies asked for (1 + corrective retries)
    error: str | None = None
    example_id: str = ""
    raw_replies: list[str] = field(default_factory=list)  # every raw reply, in order
    prompt_hash: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def position(self) -> str | None:
        """The position ("A"/"B"/"tie") the pairwise verdict picked."""
        if self.winner is None or self.order is None:
            return None
        if self.winner == "tie":
            return "tie"
        return "A" if (self.winner == "cand") == (self.order == "AB") else "B"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Judgment":
        return cls(**d)


@dataclass
class PairResult:
    """Both orders of one pairwise comparison, combined."""

    example_id: str
    criterion: str
    winner: str | None             # "cand" | "base" | "tie"; None if an order failed
    ab: Judgment
    ba: Judgment
    position_bias: bool            # both orders picked the same position (A,A or B,B)
    error: str | None = None


def judgment_key(judge_spec: str, rubric_hash: str, criterion: str, input: str, output: str,
                 order: str | None, other_output: str | None = None, reference: str | None = None) -> str:
    """sha256 of the canonical JSON of everything that decides a judgment."""
    payload = {"v": PROMPT_VERSION, "judge": judge_spec, "rubric": rubric_hash, "criterion": criterion,
               "input": input, "output": output, "order": order, "other": other_output,
               "reference": reference}
    return json_digest(payload)


# --- judges --------------------------------------------------------------------------------

@dataclass
class Reply:
    """What a text judge sent back for one request."""

    key: str
    text: str | None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class APIJudge:
    """A hosted model behind ``harness.backends.api.chat_many`` (imported lazily)."""

    spec: str
    config: Any                    # harness.backends.api.APIConfig
    max_tokens: int = 256
    parse_retries: int = 2
    scrub: Callable[[str], str] | None = None  # e.g. PII scrubbing before text leaves the machine
    kind: str = "chat"

    def chat(self, requests: list[tuple[str, list[dict]]], on_reply: Callable[[Reply], None]) -> None:
        from harness.backends.api import ChatRequest, chat_many

        def forward(r: Any) -> None:
            on_reply(Reply(r.key, r.text, r.error, r.input_tokens or 0, r.output_tokens or 0, r.cost_usd or 0.0))

        reqs = [ChatRequest(key, messages, max_tokens=self.max_tokens, temperature=0.0) for key, messages in requests]
        chat_many(self.config, reqs, on_result=forward, scrub=self.scrub)


@dataclass
class ScriptedJudge:
    """A judge for tests (like inspect_ai's mockllm): replies from a list, in order, or from a
    callable ``messages -> text``. Every request it saw is kept in ``requests``."""

    spec: str
    replies: list[str] | Callable[[list[dict]], str]
    parse_retries: int = 2
    kind: str = "chat"
    requests: list[list[dict]] = field(default_factory=list)
    _next: int = 0

    def chat(self, requests: list[tuple[str, list[dict]]], on_reply: Callable[[Reply], None]) -> None:
        for key, messages in requests:
            self.requests.append(messages)
            if callable(self.replies):
                text = self.replies(messages)
            else:
                if self._next >= len(self.replies):
                    raise HarnessError(f"scripted judge ran out of replies after {len(self.replies)}")
                text = self.replies[self._next]
                self._next += 1
            on_reply(Reply(key, text))


@dataclass
class LocalJudge:
    """A local causal LM read by next-token probabilities (G-Eval style).

    ``model`` is anything with ``next_token_probs(prompts, candidates) -> array (n, len(candidates))``
    (``harness.backends.local.LocalModel``); it is loaded on first use from ``path``.
    """

    spec: str
    path: str = "default"
    model: Any = None
    batch_size: int = 8
    tie_margin: float = 0.1
    kind: str = "probs"

    def probs(self, prompts: list[list[dict]], candidates: list[str]) -> Any:
        if self.model is None:
            self.model = _load_local_model(self.path)
        return self.model.next_token_probs(prompts, candidates)


def _load_local_model(path: str) -> Any:
    from harness.backends.local import LocalModel  # lazy: imports torch/transformers

    return LocalModel(path)


judges = Registry("judge")

_API_OPTS = ("api_key_env", "concurrency", "timeout_s", "max_retries", "backoff_base_s", "backoff_max_s", "prices")


def _api_judge(provider: str, model: str, spec: str, base_url: str | None, opts: dict[str, Any]) -> APIJudge:
    from harness.backends.api import APIConfig

    own = ("max_tokens", "parse_retries", "scrub")
    unknown = sorted(set(opts) - set(_API_OPTS) - set(own))
    if unknown:
        raise HarnessError(f"unknown option(s) for judge {spec!r}: {', '.join(unknown)}; "
                           f"known: {', '.join(_API_OPTS + ('base_url',) + own)}")
    if not model:
        raise HarnessError(f"judge {spec!r} names no model; use {provider}:MODEL")
    cfg = APIConfig(provider, model, base_url=base_url, **{k: opts[k] for k in _API_OPTS if k in opts})
    return APIJudge(spec, cfg, max_tokens=opts.get("max_tokens", 256), parse_retries=opts.get("parse_retries", 2),
                    scrub=opts.get("scrub"))


@judges.register("openai", external=True)
def _openai(rest: str, spec: str, base_url: str | None = None, **opts: Any) -> APIJudge:
    return _api_judge("openai", rest, spec, base_url, opts)


@judges.register("anthropic", external=True)
def _anthropic(rest: str, spec: str, base_url: str | None = None, **opts: Any) -> APIJudge:
    return _api_judge("anthropic", rest, spec, base_url, opts)


@judges.register("openai-compatible", external=True)
def _compatible(rest: str, spec: str, base_url: str | None = None, **opts: Any) -> APIJudge:
    model, _, url = rest.partition("@")
    url = url or base_url
    if not url:
        raise HarnessError(f"judge {spec!r} needs a server: openai-compatible:MODEL@BASE_URL or base_url=...")
    return _api_judge("openai-compatible", model, f"openai-compatible:{model}@{url}", url, opts)


@judges.register("local", external=False)
def _local(rest: str, spec: str, model: Any = None, batch_size: int = 8, tie_margin: float = 0.1) -> LocalJudge:
    return LocalJudge(f"local:{rest or 'default'}", rest or "default", model=model, batch_size=batch_size,
                      tie_margin=tie_margin)


@judges.register("scripted", external=False)
def _scripted(rest: str, spec: str, replies: list[str] | Callable | None = None, parse_retries: int = 2) -> ScriptedJudge:
    if replies is None:
        raise HarnessError("a scripted judge needs replies=[...] or replies=callable(messages)")
    replies = replies if callable(replies) else list(replies)
    return ScriptedJudge(f"scripted:{rest}", replies, parse_retries=parse_retries)


def make_judge(spec: str, **opts: Any) -> APIJudge | LocalJudge | ScriptedJudge:
    """Build a judge from ``provider:model`` (see the module docstring)."""
    if not isinstance(spec, str) or not spec.strip():
        raise HarnessError(f"judge spec must be a string like 'openai:gpt-4o', got {spec!r}")
    kind, _, rest = spec.strip().partition(":")
    return judges.get(kind)(rest, spec=spec.strip(), **opts)


def is_external(judge: Any) -> bool:
    """Whether the judge sends text off this machine (so PII must be scrubbed first)."""
    return isinstance(judge, APIJudge)


# --- running -------------------------------------------------------------------------------

@dataclass
class _Task:
    key: str
    item: JudgeItem
    criterion: str
    order: str | None
    messages: list[dict]
    followers: list[int] = field(default_factory=list)  # result slots waiting on this key


def _criteria(rubric: Rubric, criteria: Iterable[str] | None) -> list[str]:
    names = list(criteria) if criteria else rubric.criterion_names
    for n in names:
        rubric.criterion(n)  # raises with did-you-mean
    return names


def run_pointwise(judge: Any, rubric: Rubric, items: list[JudgeItem], criteria: Iterable[str] | None = None,
                  cached: dict[str, Judgment] | None = None,
                  on_result: Callable[[Judgment], None] | None = None,
                  on_start: Callable[[int], None] | None = None) -> list[Judgment]:
    """Score every item on every criterion; one Judgment per (item, criterion), item-major.
    ``on_start(n)``: how many judgments will be asked (the rest are ``cached``), before the first."""
    crits = _criteria(rubric, criteria)
    reply = "digit" if judge.kind == "probs" else "json"
    slots: list[tuple[str, JudgeItem, str, str | None]] = []
    for item in items:
        for c in crits:
            key = judgment_key(judge.spec, rubric.hash, c, item.input, item.output, None, reference=item.reference)
            slots.append((key, item, c, None))

    def messages(item: JudgeItem, c: str, order: str | None) -> list[dict]:
        return pointwise_messages(rubric, c, item.input, item.output, item.reference, reply=reply)

    return _run(judge, rubric, "pointwise", slots, messages, cached, on_result, on_start)


def run_pairwise(judge: Any, rubric: Rubric, items: list[JudgeItem], criteria: Iterable[str] | None = None,
                 cached: dict[str, Judgment] | None = None,
                 on_result: Callable[[Judgment], None] | None = None,
                 on_start: Callable[[int], None] | None = None) -> tuple[list[PairResult], list[Judgment]]:
    """Compare ``output`` (candidate) with ``other_output`` (baseline) in both orders.

    Returns one PairResult per (item, criterion) and every per-order Judgment (AB then BA).
    """
    crits = _criteria(rubric, criteria)
    reply = "letter" if judge.kind == "probs" else "json"
    for item in items:
        if item.other_output is None:
            raise HarnessError(f"pairwise item {item.example_id!r} has no other_output to compare with")
    slots = []
    for item in items:
        for c in crits:
            for order in ("AB", "BA"):
                key = judgment_key(judge.spec, rubric.hash, c, item.input, item.output, order,
                                   item.other_output, reference=item.reference)
                slots.append((key, item, c, order))

    def messages(item: JudgeItem, c: str, order: str | None) -> list[dict]:
        a, b = (item.output, item.other_output) if order == "AB" else (item.other_output, item.output)
        return pairwise_messages(rubric, c, item.input, a, b, item.reference, reply=reply)

    judgments = _run(judge, rubric, "pairwise", slots, messages, cached, on_result, on_start)
    pairs = [combine_orders(judgments[i], judgments[i + 1]) for i in range(0, len(judgments), 2)]
    return pairs, judgments


def combine_orders(ab: Judgment, ba: Judgment) -> PairResult:
    """Agreeing orders give the winner; disagreeing orders give a tie."""
    error = ab.error or ba.error
    if error:
        return PairResult(ab.example_id, ab.criterion, None, ab, ba, False, error)
    winner = ab.winner if ab.winner == ba.winner else "tie"
    bias = ab.position == ba.position and ab.position in ("A", "B")
    return PairResult(ab.example_id, ab.criterion, winner, ab, ba, bias)


def _run(judge: Any, rubric: Rubric, mode: str, slots: list[tuple[str, JudgeItem, str, str | None]],
         make_messages: Callable, cached: dict[str, Judgment] | None,
         on_result: Callable[[Judgment], None] | None,
         on_start: Callable[[int], None] | None = None) -> list[Judgment]:
    results: list[Judgment | None] = [None] * len(slots)
    tasks: dict[str, _Task] = {}
    for i, (key, item, c, order) in enumerate(slots):
        if cached and key in cached:
            results[i] = replace(cached[key], example_id=item.example_id)
        elif key in tasks:  # the same content twice in one call is judged once
            tasks[key].followers.append(i)
        else:
            tasks[key] = _Task(key, item, c, order, make_messages(item, c, order), [i])
    if on_start is not None:
        on_start(len(tasks))
    lock = threading.Lock()
    report = threading.Lock()  # backends may reply from worker threads; on_result sees one at a time

    def finish(task: _Task, **fields: Any) -> None:
        j = Judgment(key=task.key, judge=judge.spec, rubric=rubric.name, rubric_hash=rubric.hash,
                     criterion=task.criterion, mode=mode, order=task.order, example_id=task.item.example_id,
                     prompt_hash=json_digest(task.messages, 16), **fields)
        with lock:
            for i in task.followers:
                results[i] = replace(j, example_id=slots[i][1].example_id)
        if on_result is not None:
            with report:
                on_result(j)

    if tasks:
        if judge.kind == "probs":
            _run_probs(judge, mode, list(tasks.values()), finish)
        else:
            _run_chat(judge, mode, list(tasks.values()), finish)
    missing = [slots[i][0] for i, r in enumerate(results) if r is None]
    if missing:
        raise HarnessError(f"judge {judge.spec!r} returned no result for {len(missing)} request(s)")
    return results  # type: ignore[return-value]


def _position_to_winner(letter: str, order: str | None) -> str:
    if letter == "tie":
        return "tie"
    return "cand" if (letter == "A") == (order == "AB") else "base"


def _run_chat(judge: Any, mode: str, tasks: list[_Task], finish: Callable[..., None]) -> None:
    """Send, parse strictly, and re-ask unparseable ones with a corrective turn (bounded)."""
    parse = parse_pointwise_reply if mode == "pointwise" else parse_pairwise_reply
    by_key = {t.key: t for t in tasks}
    convo = {t.key: list(t.messages) for t in tasks}
    raws: dict[str, list[str]] = {t.key: [] for t in tasks}
    usage = {t.key: [0, 0, 0.0] for t in tasks}
    done: set[str] = set()
    pending = list(tasks)
    lock = threading.Lock()
    while pending:
        retry: list[_Task] = []

        def on_reply(rep: Reply) -> None:
            task = by_key[rep.key]
            with lock:
                raws[rep.key].append(rep.text if rep.text is not None else "")
                u = usage[rep.key]
                u[0] += rep.input_tokens
                u[1] += rep.output_tokens
                u[2] += rep.cost_usd
                attempts = len(raws[rep.key])
            common = dict(raw=raws[rep.key][-1], raw_replies=list(raws[rep.key]), attempts=attempts,
                          input_tokens=u[0], output_tokens=u[1], cost_usd=u[2])
            if rep.error is not None or rep.text is None:
                _finish_once(task, done, lock, finish, score=None, winner=None, rationale="",
                             error=f"judge request failed: {rep.error or 'no text in reply'}", **common)
                return
            try:
                value, rationale = parse(rep.text)
            except ReplyFormatError as exc:
                if attempts > judge.parse_retries:
                    _finish_once(task, done, lock, finish, score=None, winner=None, rationale="",
                                 error=f"unparseable reply after {attempts} attempts: {exc}", **common)
                    return
                with lock:
                    # The judge's own bad reply is echoed escaped: it may quote the data.
                    convo[rep.key] += [{"role": "assistant", "content": escape_data(rep.text)},
                                       correction_message(str(exc), "json", mode)]
                    retry.append(task)
                return
            if mode == "pointwise":
                _finish_once(task, done, lock, finish, score=float(value), winner=None, rationale=rationale,
                             error=None, **common)
            else:
                _finish_once(task, done, lock, finish, score=None, winner=_position_to_winner(value, task.order),
                             rationale=rationale, error=None, **common)

        judge.chat([(t.key, convo[t.key]) for t in pending], on_reply)
        retry_keys = {t.key for t in retry}
        for t in pending:  # a backend that dropped a request: record it instead of hanging
            if t.key not in done and t.key not in retry_keys:
                _finish_once(t, done, lock, finish, score=None, winner=None, rationale="", raw="",
                             attempts=len(raws[t.key]), error="judge backend returned no reply")
        pending = retry


def _finish_once(task: _Task, done: set[str], lock: threading.Lock, finish: Callable[..., None], **fields: Any) -> None:
    with lock:
        if task.key in done:
            return
        done.add(task.key)
    finish(task, **fields)


def _run_probs(judge: Any, mode: str, tasks: list[_Task], finish: Callable[..., None]) -> None:
    """Local judges: score from next-token probabilities; never a parse failure."""
    cands = SCORE_TOKENS if mode == "pointwise" else PAIR_TOKENS
    for start in range(0, len(tasks), judge.batch_size):
        batch = tasks[start:start + judge.batch_size]
        probs = judge.probs([t.messages for t in batch], cands)
        for task, row in zip(batch, probs):
            p = [float(x) for x in row]
            total = sum(p)
            raw = json.dumps({c: round(x, 6) for c, x in zip(cands, p)})
            if not total > 0:
                finish(task, score=None, winner=None, rationale="", raw=raw, raw_replies=[raw], attempts=1,
                       error="judge gave zero probability to every candidate token")
                continue
            p = [x / total for x in p]
            if mode == "pointwise":
                score = sum(int(c) * x for c, x in zip(cands, p))
                finish(task, score=score, winner=None, rationale=f"expected score over next-token p(1..5)={raw}",
                       raw=raw, raw_replies=[raw], attempts=1)
            else:
                pa, pb = p
                letter = "tie" if abs(pa - pb) < judge.tie_margin else ("A" if pa > pb else "B")
                finish(task, score=None, winner=_position_to_winner(letter, task.order),
                       rationale=f"p(A)={pa:.3f}, p(B)={pb:.3f}", raw=raw, raw_replies=[raw], attempts=1)


# --- aggregation ---------------------------------------------------------------------------

def example_scores(judgments: Iterable[Judgment], criterion: str | None = None) -> dict[str, float]:
    """Per-example pointwise score: one criterion, or the mean over all criteria judged.

    An example counts only if every criterion present in ``judgments`` has a score for it
    (a mean over a subset would not be comparable across examples).
    """
    js = [j for j in judgments if j.mode == "pointwise" and (criterion is None or j.criterion == criterion)]
    crits = {j.criterion for j in js}
    by_ex: dict[str, dict[str, float]] = {}
    for j in js:
        if j.score is not None:
            by_ex.setdefault(j.example_id, {})[j.criterion] = j.score
    return {ex: sum(s.values()) / len(s) for ex, s in by_ex.items() if set(s) == crits}


def metric_scores(metric: str, judgments: Iterable[Judgment]) -> dict[str, float]:
    """Per-example values of ``judge.<rubric>`` or ``judge.<rubric>.<criterion>``."""
    name = parse_metric_name(metric)
    rubric, criterion = name.rubric, name.criterion
    return example_scores([j for j in judgments if j.rubric == rubric], criterion)


def pair_values(pairs: Iterable[PairResult]) -> dict[str, float]:
    """Per-example win value (win 1, tie 0.5, loss 0), averaged over criteria. An example any of
    whose criteria failed to be judged has no value (a failed judgment, counted as one), as a
    pointwise rubric mean needs every criterion: averaging the criteria that survived lifted a
    candidate that wins on one criterion and loses on another the judge failed on."""
    acc: dict[str, list[float]] = {}
    failed: set[str] = set()
    for p in pairs:
        if p.winner is None:
            failed.add(p.example_id)
        else:
            acc.setdefault(p.example_id, []).append({"cand": 1.0, "tie": 0.5, "base": 0.0}[p.winner])
    return {ex: sum(v) / len(v) for ex, v in acc.items() if ex not in failed}


def win_rate(pairs: Iterable[PairResult]) -> float:
    """Candidate's win rate, ties counted as half (NaN when nothing was judged)."""
    vals = [{"cand": 1.0, "tie": 0.5, "base": 0.0}[p.winner] for p in pairs if p.winner is not None]
    return sum(vals) / len(vals) if vals else float("nan")


def position_bias_rate(pairs: Iterable[PairResult]) -> float:
    """Fraction of pairs whose two verdicts followed the position, not the content."""
    ok = [p for p in pairs if p.winner is not None]
    return sum(p.position_bias for p in ok) / len(ok) if ok else float("nan")

"""``kind: api``: a hosted model (OpenAI, Anthropic, or any OpenAI-compatible server).

The key comes from the environment (never the goal file or the store). Prompts are scrubbed
of PII before they leave the machine when the goal asks for it, and the prediction's cache key
covers the prompt as sent.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal

from pydantic import Field

from harness.errors import HarnessError, Problem
from harness.kinds import CandidateKind, CandidatePlan
from harness.prompts import PromptOptions

if TYPE_CHECKING:
    from harness.goals import Candidate, Goal
    from harness.runner.context import Outputs, Run


class ApiOptions(PromptOptions):
    provider: Literal["openai", "anthropic", "openai-compatible"] = Field(
        description="openai, anthropic or openai-compatible (vLLM, Ollama, ...; needs base_url).")
    model_id: str | None = Field(None, description="The provider's model id, when `model:` is not used.")
    base_url: str | None = Field(None, description="Server URL; required for openai-compatible.")
    api_key_env: str | None = Field(None, description="Environment variable holding the key (default per provider).")
    concurrency: int = Field(8, ge=1, description="Requests in flight at once.")
    timeout_s: float = Field(60.0, gt=0, description="Per attempt, whole request.")
    max_retries: int = Field(4, ge=0, description="Retries after the first attempt (429, 5xx, timeouts).")
    backoff_base_s: float = Field(0.5, gt=0, description="First retry's backoff; doubles, with jitter.")
    backoff_max_s: float = Field(30.0, gt=0, description="Longest backoff between retries.")
    prices: dict[str, float] | None = Field(
        None, description="USD per 1M tokens: {input_per_mtok, output_per_mtok}; overrides the price table.")


class ApiKind(CandidateKind):
    name: ClassVar[str] = "api"
    description: ClassVar[str] = "A hosted model (OpenAI, Anthropic, OpenAI-compatible)."
    Options = ApiOptions
    local_model: ClassVar[bool] = False

    def check(self, cand: "Candidate", goal: "Goal", options: ApiOptions) -> list[Problem]:
        from harness.backends.api import validate_config

        problems = []
        if not (cand.model or options.model_id):
            problems.append(Problem("", None, "model", "api candidates need a model (the provider's model id)"))
            return problems
        try:
            validate_config(self.config(goal, cand, options))
        except HarnessError as exc:
            problems.append(Problem("", None, "base_url" if "base_url" in str(exc) else "provider", str(exc)))
        return problems

    def model_of(self, goal: "Goal", cand: "Candidate") -> str | None:
        return cand.model or cand.options.get("model_id")

    def config(self, goal: "Goal", cand: "Candidate", options: ApiOptions) -> Any:
        from harness.backends.api import APIConfig

        model = str(cand.model or options.model_id)
        fields = options.model_dump(include={"base_url", "api_key_env", "concurrency", "timeout_s", "max_retries",
                                             "backoff_base_s", "backoff_max_s"}, exclude_none=True)
        return APIConfig(provider=options.provider, model=model, prices=goal.prices.get(model) or options.prices,
                         **fields)

    def requests(self, run: "Run", cand: "Candidate", options: ApiOptions | None = None,
                 prompts: list[list[dict[str, str]]] | None = None) -> tuple[Any, list, list[str]]:
        """(client config, messages as sent, cache keys) of the candidate's test prompts (or of
        ``prompts``, for a kind that builds its own: ``rag``, whose options extend these)."""
        from harness.cache import prediction_key

        options = options or self.options(cand)
        cfg = self.config(run.goal, cand, options)
        scrub = _scrubber(run)
        prompts = run.prompts(options, options.resolved_style()) if prompts is None else prompts
        sent = [[{**m, "content": scrub(m["content"])} for m in p] for p in prompts]
        d = run.goal.decoding
        decoding = {"max_tokens": d.max_new_tokens, "temperature": d.temperature, "top_p": d.top_p}
        model_id = f"api:{cfg.provider}:{cfg.model}:{cfg.base_url or ''}"
        return cfg, sent, [prediction_key(model_id, p, decoding) for p in sent]

    def plan(self, run: "Run", cand: "Candidate",
             requests: tuple[Any, list, list[str]] | None = None) -> CandidatePlan:
        from harness.backends.api import estimate_cost
        from harness.runner.generation import generation_plan

        cfg, sent, keys = requests or self.requests(run, cand)
        plan = generation_plan(run, cand, keys)
        new = [m for m, k in zip(sent, keys) if k not in plan.stored]
        if new:
            avg_words = sum(len(" ".join(x["content"] for x in m).split()) for m in new) / len(new)
            estimate = estimate_cost(cfg, len(new), avg_words * 1.4, run.goal.decoding.max_new_tokens)
            step = plan.steps[-1]
            step.est_cost_usd = float(estimate)
            step.note = estimate.note or "list price; ~1.4 tokens a word, max_new_tokens out"
        return plan

    def produce(self, run: "Run", cand: "Candidate", requests: tuple[Any, list, list[str]] | None = None,
                passages: list[list[str]] | None = None) -> "Outputs":
        from harness.backends.api import ChatRequest, chat_many
        from harness.runner.generation import generate_cached

        cfg, sent, keys = requests or self.requests(run, cand)
        d = run.goal.decoding

        def produce(todo: list[int], on_result: Callable[[int, dict], None]) -> None:
            reqs = [ChatRequest(key=str(i), messages=sent[i], max_tokens=d.max_new_tokens, temperature=d.temperature,
                                top_p=d.top_p if d.top_p < 1 else None) for i in todo]
            from harness.progress import bar

            def done(res: Any) -> None:
                # A request that failed after its retries is a result (stored as a failure, asked
                # again next run); a 401/403/404, which would fail every request, stops chat_many.
                progress.advance(1)
                row = {"prompt_tokens": res.input_tokens, "output_tokens": res.output_tokens,
                       "latency_s": res.latency_s, "cost_usd": res.cost_usd, "attempts": res.attempts}
                on_result(int(res.key), {**row, "output": res.text} if res.error is None else
                          {**row, "output": None, "error": f"{res.error} (after {res.attempts} attempt(s))"})

            with bar(f"{cand.name}: generating", len(reqs), unit="requests", enabled=run.progress) as progress:
                chat_many(cfg, reqs, on_result=done)

        model_id = f"api:{cfg.provider}:{cfg.model}:{cfg.base_url or ''}"
        return generate_cached(run, cand, keys, model_id, produce, passages=passages, messages=sent)


def _scrubber(run: "Run") -> Callable[[str], str]:
    if not run.goal.data.scrub_pii:
        return lambda text: text
    from harness.data.pii import scrub_text

    return lambda text: scrub_text(text)[0]

"""Rubrics and LLM-as-a-judge (pointwise, and pairwise with position swap)."""
from harness.judge.judge import (
    APIJudge,
    JudgeItem,
    Judgment,
    LocalJudge,
    PairResult,
    ScriptedJudge,
    combine_orders,
    example_scores,
    is_external,
    judges,
    judgment_key,
    make_judge,
    metric_scores,
    pair_values,
    position_bias_rate,
    run_pairwise,
    run_pointwise,
    win_rate,
)
from harness.judge.prompt import (
    INSTRUCTION_CLOSE,
    INSTRUCTION_OPEN,
    PROMPT_VERSION,
    ReplyFormatError,
    count_instruction_sections,
    escape_data,
    pairwise_messages,
    parse_pairwise_reply,
    parse_pointwise_reply,
    parse_prompt,
    pointwise_messages,
    unescape_data,
)
from harness.judge.rubric import (
    Criterion,
    Rubric,
    list_rubrics,
    load_rubric,
    parse_rubric,
)

__all__ = [
    "APIJudge", "Criterion", "INSTRUCTION_CLOSE", "INSTRUCTION_OPEN", "JudgeItem", "Judgment", "LocalJudge",
    "PROMPT_VERSION", "PairResult", "ReplyFormatError", "Rubric", "ScriptedJudge", "combine_orders",
    "count_instruction_sections", "escape_data", "example_scores", "is_external", "judges",
    "judgment_key", "list_rubrics", "load_rubric", "make_judge", "metric_scores", "pair_values",
    "pairwise_messages", "parse_pairwise_reply", "parse_pointwise_reply", "parse_prompt",
    "parse_rubric", "pointwise_messages", "position_bias_rate", "run_pairwise", "run_pointwise",
    "unescape_data", "win_rate",
]

"""Content keys: a result is identified by everything that determines it, nothing else.

Every hash of content in the harness goes through this module, so the canonical form (sorted
keys, no whitespace, UTF-8 kept as is) is written once: example ids, rubric versions,
prediction, judgment and adapter keys, prompt hashes.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """The one canonical JSON text of ``obj``; values JSON cannot hold are written as ``str``."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def digest(text: str, n: int | None = None) -> str:
    """sha256 of ``text`` (UTF-8) as hex, cut to ``n`` characters when given."""
    value = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return value if n is None else value[:n]


def json_digest(obj: Any, n: int | None = None) -> str:
    """:func:`digest` of the canonical JSON of ``obj``."""
    return digest(canonical_json(obj), n)


def content_key(*parts: Any) -> str:
    return json_digest(list(parts))


def prediction_key(model_id: str, messages: list[dict[str, str]], decoding: dict[str, Any]) -> str:
    """Key of one generation: model (+ adapter) content hash, the exact prompt, decoding."""
    return content_key("prediction/v1", model_id, messages, decoding)

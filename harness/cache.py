"""Content keys: a result is identified by everything that determines it, nothing else."""
from __future__ import annotations

import hashlib
import json
from typing import Any


def content_key(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def prediction_key(model_id: str, messages: list[dict[str, str]], decoding: dict[str, Any]) -> str:
    """Key of one generation: model (+ adapter) content hash, the exact prompt, decoding."""
    return content_key("prediction/v1", model_id, messages, decoding)

"""What a trained model saw: the train and validation examples of its training, and of its base's.

``harness_seen.json`` beside the weights (an adapter, a ``full`` model, a merged export) lists
them twice: by example id (the scrubbed and the original one when PII was scrubbed) and by a
digest of the example's user turns and answer, normalised (case, spacing), so a copy under
another system prompt is the same example. A goal whose test set holds one refuses the model
(:func:`harness.runner.validate.preflight`): its scores would be recall of the answers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from harness.cache import digest
from harness.data.formats import Example

SEEN_FILE = "harness_seen.json"


@dataclass(frozen=True)
class Seen:
    ids: frozenset[str]
    texts: frozenset[str]
    trained_by: str  # "goal G, candidate C" where known
    base_unchecked: bool = False  # trained on a harness-trained base whose record was missing or damaged

    def found(self, test: Sequence[Example]) -> list[Example]:
        """The test examples among those seen."""
        return [ex for ex in test if _ids(ex) & self.ids or text_key(ex) in self.texts]


UNREADABLE = Seen(frozenset(), frozenset(), "")  # a record that is there but cannot be read


def text_key(ex: Example) -> str:
    from harness.data.dedup import normalise
    from harness.data.split import example_text

    return digest(normalise(example_text(ex)), 16)


def _ids(ex: Example) -> set[str]:
    return {ex.id, str(ex.extra.get("original_id") or ex.id)}


def write_seen(folder: Path, examples: Sequence[Example], base: Path | None, trained_by: str) -> None:
    """Write what a model trained on ``examples`` saw, with what its ``base`` model saw."""
    from harness.train.sft import METADATA_FILE

    ids = {i for ex in examples for i in _ids(ex)}
    texts = {text_key(ex) for ex in examples}
    inherited = read_seen(base)
    unchecked = inherited is UNREADABLE or (inherited is None and base is not None
                                            and (Path(base) / METADATA_FILE).is_file())
    if inherited is not None and inherited is not UNREADABLE:
        ids |= inherited.ids
        texts |= inherited.texts
        trained_by += f"; on a base trained by {inherited.trained_by}"
        unchecked = inherited.base_unchecked
    (Path(folder) / SEEN_FILE).write_text(json.dumps({"ids": sorted(ids), "texts": sorted(texts),
                                                      "trained_by": trained_by, "base_unchecked": unchecked}))


def read_seen(folder: Path | None) -> Seen | None:
    """What the model in ``folder`` saw; None when it has no record (not trained by the
    harness), :data:`UNREADABLE` when the record is damaged."""
    if folder is None:
        return None
    path = Path(folder) / SEEN_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ids, texts = data["ids"], data["texts"]
        if not (isinstance(ids, list) and isinstance(texts, list)):
            return UNREADABLE
        return Seen(frozenset(map(str, ids)), frozenset(map(str, texts)), str(data.get("trained_by") or "?"),
                    bool(data.get("base_unchecked")))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return UNREADABLE

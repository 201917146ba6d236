"""A stand-in for ``vllm serve`` that speaks the part of its OpenAI-compatible API the harness
uses, generating greedily with transformers (+ peft for each LoRA module), and records what
it was asked: ``starts.jsonl`` (one line per server process: its argv and pid) and
``requests.jsonl`` (one line per request: path, model, prompt length) in ``$FAKE_VLLM_RECORD``.

    python -m tests.fakevllm serve BASE --host H --port P --served-model-name NAME
        [--enable-lora --max-lora-rank R] [--lora-modules NAME=PATH ...] [other vllm flags, ignored]

Endpoints: ``GET /health``, ``GET /v1/models``, ``POST /v1/completions`` (prompt as token ids),
``POST /v1/load_lora_adapter`` (only with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``, as vLLM).
A request naming a model it does not serve gets 404, as from vLLM.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["serve"])
    ap.add_argument("model")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--served-model-name", default=None)
    ap.add_argument("--enable-lora", action="store_true")
    ap.add_argument("--max-lora-rank", type=int, default=16)
    ap.add_argument("--lora-modules", nargs="*", default=[])
    args, _ignored = ap.parse_known_args(argv)
    return args


class Models:
    """The base model and its LoRA modules, loaded lazily, one generation at a time."""

    def __init__(self, base: str, name: str, max_rank: int, lora: bool):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.base_path, self.name, self.max_rank, self.lora = base, name, max_rank, lora
        self.tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
        self.models = {name: AutoModelForCausalLM.from_pretrained(base, local_files_only=True).eval()}
        self.adapters: dict[str, str] = {}
        self.lock = threading.Lock()

    def add_adapter(self, name: str, path: str) -> None:
        cfg = json.loads((Path(path) / "adapter_config.json").read_text())
        if not self.lora or int(cfg["r"]) > self.max_rank:
            raise ValueError(f"LoRA rank {cfg['r']} is greater than max_lora_rank {self.max_rank}"
                             if self.lora else "LoRA is not enabled")
        self.adapters[name] = path

    def model(self, name: str):
        with self.lock:  # requests arrive concurrently; load each model once
            return self._model(name)

    def _model(self, name: str):
        if name in self.models:
            return self.models[name]
        if name not in self.adapters:
            return None
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(self.base_path, local_files_only=True)
        self.models[name] = PeftModel.from_pretrained(base, self.adapters[name]).eval()
        return self.models[name]

    def complete(self, model, ids: list[int], body: dict) -> list[int]:
        import torch

        with self.lock, torch.inference_mode():
            out = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=int(body.get("max_tokens") or 16), do_sample=False,
                                 eos_token_id=list(body.get("stop_token_ids") or [self.tokenizer.eos_token_id]),
                                 pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        return out[0, len(ids):].tolist()


def _handler(models: Models, record: Path | None):
    def log(entry: dict) -> None:
        if record is not None:
            with open(record / "requests.jsonl", "a") as f:
                f.write(json.dumps(entry) + "\n")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, code: int, payload) -> None:
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                return self._send(200, "")
            if self.path == "/v1/models":
                data = [{"id": models.name, "object": "model", "root": models.base_path, "parent": None}]
                data += [{"id": n, "object": "model", "root": p, "parent": models.name} for n, p in models.adapters.items()]
                return self._send(200, {"object": "list", "data": data})
            self._send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            log({"path": self.path, "model": body.get("model") or body.get("lora_name"),
                 "prompt_tokens": len(body.get("prompt") or []), "keys": sorted(body)})
            if self.path == "/v1/load_lora_adapter":
                if os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING") != "True":
                    return self._send(400, {"error": {"message": "runtime LoRA updating is off"}})
                try:
                    models.add_adapter(body["lora_name"], body["lora_path"])
                except (ValueError, OSError, KeyError) as exc:
                    return self._send(400, {"error": {"message": str(exc)}})
                return self._send(200, f"Success: LoRA adapter '{body['lora_name']}' added successfully.")
            if self.path != "/v1/completions":
                return self._send(404, {"error": {"message": "not found"}})
            model = models.model(body.get("model"))
            if model is None:
                return self._send(404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}})
            ids = list(body["prompt"])
            new = models.complete(model, ids, body)
            text = models.tokenizer.decode(new, skip_special_tokens=True)
            self._send(200, {"object": "text_completion", "model": body["model"],
                             "choices": [{"index": 0, "text": text, "token_ids": new, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": len(ids), "completion_tokens": len(new),
                                       "total_tokens": len(ids) + len(new)}})

    return Handler


def main(argv: list[str]) -> None:
    args = _parse(argv)
    record = Path(os.environ["FAKE_VLLM_RECORD"]) if os.environ.get("FAKE_VLLM_RECORD") else None
    if record is not None:
        record.mkdir(parents=True, exist_ok=True)
        with open(record / "starts.jsonl", "a") as f:
            f.write(json.dumps({"argv": ["vllm", *argv], "pid": os.getpid()}) + "\n")
    models = Models(args.model, args.served_model_name or args.model, args.max_lora_rank, args.enable_lora)
    for spec in args.lora_modules:
        name, path = spec.split("=", 1)
        models.add_adapter(name, path)
    server = ThreadingHTTPServer((args.host, args.port), _handler(models, record))
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])

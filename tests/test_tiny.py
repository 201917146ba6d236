"""The tiny test model: deterministic, fast, and a normal HF folder."""
from __future__ import annotations

import json
import os
import time

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness.backends.tiny import build_tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "m")


def test_folder_is_a_normal_hf_model(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((tiny / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["num_hidden_layers"] == 2 and config["hidden_size"] == 64
    tok = AutoTokenizer.from_pretrained(tiny, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny, local_files_only=True)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.pad_token_id != tok.eos_token_id  # training can mask pads without masking eos
    assert model.config.vocab_size == len(tok)
    assert model.config.eos_token_id == tok.eos_token_id
    assert sum(p.numel() for p in model.parameters()) < 200_000


def test_chatml_template_like_smollm2(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny, local_files_only=True)
    msgs = [{"role": "system", "content": "Be calm."}, {"role": "user", "content": "Where is my order?"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe calm.<|im_end|>\n<|im_start|>user\nWhere is my order?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = tok(text, add_special_tokens=False)["input_ids"]
    # special tokens are single ids, and the byte-level BPE round-trips the text exactly
    assert ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 3
    assert tok.decode(ids) == text
    # merges were learned: fewer tokens than bytes
    assert len(ids) < len(text.encode())


def test_deterministic_for_a_seed(tmp_path):
    a = build_tiny_model(tmp_path / "a", seed=3)
    b = build_tiny_model(tmp_path / "b", seed=3)
    c = build_tiny_model(tmp_path / "c", seed=4)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


def test_corpus_and_size_arguments(tmp_path):
    from transformers import AutoTokenizer

    corpus = ["zebra quokka zebra quokka"] * 5
    path = build_tiny_model(tmp_path / "z", corpus, layers=1, hidden=32)
    config = json.loads((path / "config.json").read_text())
    assert config["num_hidden_layers"] == 1 and config["hidden_size"] == 32
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    # the corpus words became few tokens
    assert len(tok("zebra quokka", add_special_tokens=False)["input_ids"]) <= 4


def test_build_is_fast(tmp_path, tiny):
    start = time.perf_counter()  # imports are warm (the fixture built one already)
    build_tiny_model(tmp_path / "fast")
    assert time.perf_counter() - start < 3.0

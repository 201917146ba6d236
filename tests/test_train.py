"""Training: methods, loss masking, the loop, early stopping, metadata and hashes (tiny model)."""
from __future__ import annotations

import random
import sys
import time

import pytest

from harness.data.formats import make_example
from harness.errors import GPURequiredError, HarnessError, InputError
from harness.train import METHODS, TrainParams, adapter_hash, is_overfitting, read_metadata, train_adapter
from harness.train import sft
from harness.prompts import render_prompt

WORDS = "order refund password tracking address subscription delivery label summary question answer help".split()


def chat_example(question: str, answer: str, system: str | None = None):
    prompt = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return make_example("chat", prompt, answer)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from harness.backends.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def data():
    train = [chat_example(f"What is {i} plus {i}?", f"It is {2 * i}.") for i in range(12)]
    val = [chat_example(f"What is {i} plus {i}?", f"It is {2 * i}.") for i in range(12, 16)]
    return train, val


@pytest.fixture(scope="module")
def tokenizer(tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny)


# --- params and methods ----------------------------------------------------------------------
def test_params_forbid_unknown_keys_and_suggest_methods():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="lerning_rate"):
        TrainParams(lerning_rate=1e-3)
    with pytest.raises(ValidationError, match="did you mean 'lora'"):
        TrainParams(method="lroa")


def test_params_defaults_per_method_and_help_text():
    assert TrainParams().method == "lora" and TrainParams().lr == 2e-4
    assert TrainParams(method="full").lr == METHODS.meta("full")["default_lr"]
    assert TrainParams(method="prompt", learning_rate=0.5).lr == 0.5
    lora = TrainParams()
    assert (lora.r, lora.alpha, lora.dropout, lora.target_modules, lora.epochs) == (16, 32, 0.05, "all-linear", 3)
    for name, f in TrainParams.model_fields.items():
        assert f.description, f"{name} has no help text"


def test_registry_lists_every_method_with_a_peft_config():
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig

    assert {"lora", "qlora", "prefix", "prompt", "full"} <= set(METHODS.names())
    cfg = METHODS.get("lora")(TrainParams(r=4, alpha=8, dropout=0.1))
    assert isinstance(cfg, LoraConfig) and (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (4, 8, 0.1)
    assert cfg.target_modules == "all-linear"
    assert isinstance(METHODS.get("prefix")(TrainParams(method="prefix", num_virtual_tokens=7)), PrefixTuningConfig)
    assert METHODS.get("prompt")(TrainParams(method="prompt")).num_virtual_tokens == 20
    assert isinstance(METHODS.get("prompt")(TrainParams(method="prompt")), PromptTuningConfig)
    assert METHODS.get("full")(TrainParams(method="full")) is None
    with pytest.raises(HarnessError, match="did you mean"):
        METHODS.get("qlor")


def test_qlora_without_cuda_fails_fast_before_loading(monkeypatch, tmp_path, data):
    import importlib.util

    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes"):
        pytest.skip("this machine can run qlora")

    def must_not_run(*a, **k):
        raise AssertionError("qlora loaded something before checking for CUDA")

    monkeypatch.setattr(sft, "_resolve_base", must_not_run)
    monkeypatch.setattr(sft, "load_for_training", must_not_run)
    start = time.perf_counter()
    with pytest.raises(GPURequiredError) as err:
        train_adapter("default", data[0], data[1], TrainParams(method="qlora"), tmp_path / "out", progress=False)
    assert time.perf_counter() - start < 2
    message = str(err.value)
    assert "CUDA" in message and "pip install bitsandbytes" in message
    assert not (tmp_path / "out").exists()


# --- tokenisation and masking ----------------------------------------------------------------
def test_labels_mask_every_prompt_token(tokenizer):
    ex = chat_example("Where is my order?", "It ships today.", system="Be brief.")
    enc = sft.encode_example(tokenizer, ex, max_length=512)
    prompt_ids = tokenizer(render_prompt(tokenizer, ex.prompt), add_special_tokens=False)["input_ids"]
    n = len(prompt_ids)
    assert enc.input_ids[:n] == prompt_ids
    assert enc.labels[:n] == [-100] * n
    assert enc.labels[n:] == enc.input_ids[n:] and n < len(enc.input_ids)
    # The supervised part decodes to the answer and the turn's closing token, nothing of the prompt.
    answer = tokenizer.decode(enc.input_ids[n:])
    assert answer.startswith("It ships today.") and "<|im_end|>" in answer and "order" not in answer


def test_collate_masks_padding(tokenizer):
    rows = [sft.encode_example(tokenizer, chat_example("Hi", "Hello there, friend."), 512),
            sft.encode_example(tokenizer, chat_example("A much longer question about my refund?", "Yes."), 512)]
    batch = sft.collate(rows, pad_id=tokenizer.pad_token_id)
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        assert batch["attention_mask"][i, :n].all() and not batch["attention_mask"][i, n:].any()
        assert (batch["labels"][i, n:] == -100).all()
        assert batch["labels"][i, :n].tolist() == row.labels
    assert sft.count_targets(batch) == sum(r.n_answer for r in rows)


def test_truncation_keeps_the_answer(tokenizer):
    long_q = " ".join(WORDS * 20)
    enc = sft.encode_example(tokenizer, chat_example(long_q, "Your refund was issued."), max_length=40)
    full = sft.encode_example(tokenizer, chat_example(long_q, "Your refund was issued."), max_length=10_000)
    assert len(enc.input_ids) == 40
    assert enc.n_answer == full.n_answer  # the whole answer survives
    assert enc.input_ids == full.input_ids[-40:]  # the prompt lost tokens from its start


def test_answer_only_head_matches_the_models_own_loss(tiny, tokenizer):
    """Reference: transformers' full-logits loss on the same labels; and padding changes nothing."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    rows = [sft.encode_example(tokenizer, chat_example(q, a), 512)
            for q, a in [("Hi", "Hello there."), ("Where is my order, please?", "It ships today.")]]
    batch = sft.collate(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        reference = model(**batch).loss  # token mean over labels != -100
        restore = sft.install_answer_only_head(model)
        total, n = model(**batch, answer_loss=True)
        singles = [model(**sft.collate([r], tokenizer.pad_token_id), answer_loss=True) for r in rows]
        restore()
    assert n == sft.count_targets(batch)
    assert torch.allclose(total / n, reference, atol=1e-5)
    assert abs(float(total) - sum(float(s) for s, _ in singles)) < 1e-3  # padded batch == one by one
    assert model.forward.__func__ is type(model).forward  # patch removed


def test_length_grouped_batches_cover_everything_with_little_padding():
    rng = random.Random(0)
    lengths = [rng.randint(5, 200) for _ in range(403)]
    batches = sft.length_grouped_batches(lengths, 8, random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(403))

    def padded(bs):
        return sum(len(b) * max(lengths[i] for i in b) for b in bs)

    in_file_order = [list(range(s, min(s + 8, 403))) for s in range(0, 403, 8)]
    assert padded(batches) < 0.8 * padded(in_file_order)  # grouping pads far less than batches in file order
    assert batches != sft.length_grouped_batches(lengths, 8, random.Random(2))  # order depends on seed


# --- training each method --------------------------------------------------------------------
def _trained_vs_initial(tiny, out, params):
    """Pairs (name, initial tensor, saved tensor) for every trainable parameter."""
    import torch
    from safetensors.torch import load_file

    if params.method == "full":
        init = load_file(str(tiny / "model.safetensors"))
        saved = load_file(str(out / "model.safetensors"))
        assert set(saved) == set(init)
        return [(k, init[k], saved[k]) for k in init]
    from peft import get_peft_model_state_dict

    model, restore = sft.load_for_training(tiny, params)
    restore()
    init = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
    n_trainable = sum(1 for p in model.parameters() if p.requires_grad)
    saved = load_file(str(out / "adapter_model.safetensors"))
    assert set(saved) == set(init) and len(saved) == n_trainable
    return [(k, init[k], saved[k].to(torch.float32)) for k in init]


@pytest.mark.parametrize("method,lr", [("lora", 1e-2), ("prefix", 3e-2), ("prompt", 1e-1), ("full", 3e-3)])
def test_each_method_trains_saves_and_loads(method, lr, tiny, data, tmp_path):
    import torch

    params = TrainParams(method=method, learning_rate=lr, max_steps=8, batch_size=4, eval_every=4, seed=3,
                         num_virtual_tokens=4)
    seen: list[tuple[int, str, float]] = []
    out = tmp_path / method
    res = train_adapter(str(tiny), data[0], data[1], params, out, progress=False, threads=1,
                          on_curve=lambda *c: seen.append(c), meta={"test_hash": "t123", "goal": "g"})
    train_losses = [loss for _, split, loss in res.curves if split == "train"]
    assert len(train_losses) == res.steps == 8
    assert sum(train_losses[-2:]) / 2 < sum(train_losses[:2]) / 2  # train loss went down
    assert seen == res.curves
    assert [s for s, split, _ in res.curves if split == "validation"] == [0, 4, 8]

    for name, before, after in _trained_vs_initial(tiny, out, params):
        assert not torch.equal(before, after), f"{name} did not change"

    meta = read_metadata(out)
    assert meta["method"] == method and meta["seed"] == 3 and meta["test_hash"] == "t123"
    assert meta["base_model"]["name"] == tiny.name and meta["base_model"]["hash"]
    assert meta["params"]["learning_rate"] == lr and meta["steps"] == 8
    from harness.data.split import data_hash as split_data_hash

    assert meta["data_hash"] == split_data_hash(data[0]) and meta["tokens_seen"] == res.tokens_seen > 0
    from harness.train.seen import read_seen, text_key

    seen = read_seen(out)  # what it saw, for goals that would test it on one of those
    assert seen.ids == {e.id for e in data[0]} | {e.id for e in data[1]}
    assert seen.texts == {text_key(e) for e in data[0] + data[1]} and seen.trained_by == "goal 'g', candidate '?'"
    assert set(meta["versions"]) >= {"torch", "transformers", "peft", "trl"}
    assert meta["trainer_version"] == sft.TRAINER_VERSION
    assert meta["adapter_hash"] == res.adapter_hash == adapter_hash(out)
    assert meta["train_seconds"] > 0 and meta["final_val_loss"] == pytest.approx(res.final_val_loss)

    # The hash is of content: reloading and saving again gives the same hash.
    resaved = tmp_path / "resaved"
    if method == "full":
        from transformers import AutoModelForCausalLM

        AutoModelForCausalLM.from_pretrained(out).save_pretrained(resaved)
    else:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), out).save_pretrained(resaved)
    assert adapter_hash(resaved) == res.adapter_hash

    from harness.backends.local import DecodingParams, LocalModel

    lm = LocalModel(str(out)) if method == "full" else LocalModel(str(tiny), adapter=out, threads=1)
    gen = lm.generate([[{"role": "user", "content": "What is 2 plus 2?"}]], DecodingParams(max_new_tokens=4),
                      progress=False)
    assert len(gen) == 1 and isinstance(gen[0].text, str) and gen[0].output_tokens >= 1


def test_same_seed_same_adapter(tiny, data, tmp_path):
    params = TrainParams(max_steps=3, batch_size=4, learning_rate=1e-2, seed=5)
    a = train_adapter(str(tiny), data[0], data[1], params, tmp_path / "a", progress=False, threads=1)
    b = train_adapter(str(tiny), data[0], data[1], params, tmp_path / "b", progress=False, threads=1)
    c = train_adapter(str(tiny), data[0], data[1], params.model_copy(update={"seed": 6}), tmp_path / "c",
                        progress=False, threads=1)
    assert a.adapter_hash == b.adapter_hash != c.adapter_hash
    assert a.curves == b.curves


def test_adapter_hash_ignores_set_order_and_paths_but_not_settings(tiny, data, tmp_path):
    # peft holds target_modules as a set: after a reload the saved list can come out in another
    # order (CI saw it), and the base model's path is machine-local. Neither is the adapter.
    import json
    import shutil

    from harness.backends.local import local_model_id

    res = train_adapter(str(tiny), data[0], data[1], TrainParams(max_steps=1, batch_size=4), tmp_path / "a",
                          progress=False, threads=1)
    moved = tmp_path / "elsewhere" / "adapter"
    shutil.copytree(res.adapter_path, moved)
    cfg_file = moved / "adapter_config.json"
    cfg = json.loads(cfg_file.read_text())
    assert len(cfg["target_modules"]) > 1
    cfg["target_modules"] = list(reversed(cfg["target_modules"]))
    cfg["base_model_name_or_path"] = "/some/other/machine/model"
    cfg_file.write_text(json.dumps(cfg))
    assert adapter_hash(moved) == res.adapter_hash
    assert local_model_id(str(tiny), moved) == local_model_id(str(tiny), res.adapter_path)

    cfg["target_modules"] = cfg["target_modules"][1:]  # a real difference still counts
    cfg_file.write_text(json.dumps(cfg))
    assert adapter_hash(moved) != res.adapter_hash


def test_grad_accum_counts_steps_and_tokens(tiny, data, tokenizer, tmp_path):
    params = TrainParams(epochs=1, batch_size=2, grad_accum=3, learning_rate=1e-2)
    res = train_adapter(str(tiny), data[0], data[1], params, tmp_path / "ga", progress=False, threads=1)
    assert res.steps == 2  # 12 examples / (2 x 3)
    assert res.tokens_seen == sum(len(sft.encode_example(tokenizer, ex, 1024).input_ids) for ex in data[0])


def test_early_stopping_keeps_the_best_and_flags_overfitting(tiny, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def ex(i, j):
        return chat_example(f"Code {i}?", f"{WORDS[j % 12]} {WORDS[(j * 7 + 3) % 12]} {WORDS[(j * 5 + 1) % 12]}")

    train = [ex(i, i) for i in range(4)]
    val = [ex(i, i + 4) for i in range(4)]  # same questions, other answers: memorising hurts
    params = TrainParams(learning_rate=3e-2, epochs=60, batch_size=4, eval_every=1, patience=3)
    res = train_adapter(str(tiny), train, val, params, tmp_path / "es", progress=False, threads=1)
    assert res.stopped_early and res.steps < 60
    vals = {s: loss for s, split, loss in res.curves if split == "validation" and s > 0}
    assert res.best_step == min(vals, key=vals.get) < res.steps
    assert res.final_val_loss == pytest.approx(min(vals.values()))
    assert res.overfitting
    assert read_metadata(tmp_path / "es")["saved_step"] == res.best_step

    # The saved adapter really is the best one: its validation loss is the best seen.
    tok = AutoTokenizer.from_pretrained(tiny)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32),
                                      tmp_path / "es")
    restore = sft.install_answer_only_head(model.get_base_model())
    batches = [sft.collate([sft.encode_example(tok, e, 1024) for e in val], tok.pad_token_id)]
    assert sft.evaluate(model, batches, torch.device("cpu")) == pytest.approx(res.final_val_loss, rel=1e-4)
    restore()


def test_is_overfitting_on_curves():
    def curves(train, val, every=2):
        out = [(i + 1, "train", x) for i, x in enumerate(train)]
        return out + [((i + 1) * every, "validation", x) for i, x in enumerate(val)]

    falling = [5, 4.5, 4, 3.5, 3, 2.5, 2, 1.5]
    assert is_overfitting(curves(falling, [4, 3, 3.5, 3.8]))
    assert not is_overfitting(curves(falling, [4, 3, 2.9, 2.8]))  # still improving
    assert not is_overfitting(curves(falling, [4, 3, 3.01, 3.02]))  # within tolerance
    assert not is_overfitting(curves([5, 4, 3, 2.5, 2.6, 2.8, 3.0, 3.2], [4, 3, 3.5, 3.8]))  # train rising too
    assert not is_overfitting(curves(falling, [4]))


def test_bad_inputs_are_clear_errors(tiny, data, tmp_path):
    with pytest.raises(InputError, match="no training examples"):
        train_adapter(str(tiny), [], data[1], TrainParams(), tmp_path / "x", progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(HarnessError, match="refusing to overwrite"):
        train_adapter(str(tiny), data[0], data[1], TrainParams(), tmp_path / "busy", progress=False)
    with pytest.raises(HarnessError, match="not a harness adapter"):
        read_metadata(tmp_path / "busy")


def test_pure_parts_import_no_torch():
    import subprocess

    code = ("import sys; import harness.train as t; t.is_overfitting([]); t.TrainParams(); "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'trl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_lora_on_the_default_model(tmp_path):
    from harness.backends.modelhub import default_gguf_path
    from harness.errors import ModelNotAvailableError

    try:
        default_gguf_path()
    except ModelNotAvailableError as exc:
        pytest.skip(str(exc))
    train = [chat_example(f"Say the word number {i}.", f"Word {i}.") for i in range(8)]
    params = TrainParams(max_steps=3, batch_size=2, eval_every=3, learning_rate=1e-3)
    res = train_adapter("default", train, train[:1], params, tmp_path / "lora", progress=False)
    losses = [loss for _, split, loss in res.curves if split == "train"]
    assert res.steps == 3 and losses[-1] < losses[0]
    assert read_metadata(tmp_path / "lora")["base_model"]["name"] == "SmolLM2-135M-Instruct"


@pytest.mark.parametrize("p", [0.05, 0.25])
def test_fast_dropout_matches_dropout_in_distribution(p):
    import torch

    fast = sft.fast_dropout_class()(p)
    x = torch.ones(400, 1001, requires_grad=True)  # an odd size: the last 64-bit draw is split
    torch.manual_seed(0)
    y = fast.train()(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.003  # keep probability 1 - p
    # each of the four 15-bit lanes of a 64-bit draw is uniform, the top one included
    lanes = kept.flatten()[: kept.numel() // 4 * 4].view(-1, 4).float().mean(0)
    assert torch.all((lanes - (1 - p)).abs() < 0.006), lanes
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)), rtol=1e-3)  # scaled like nn.Dropout
    assert abs(y.mean().item() - 1.0) < 0.01  # unbiased
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient goes through the same mask and scale
    torch.manual_seed(0)
    assert torch.equal(fast(x), y)  # seeded: same mask
    assert fast.eval()(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        sft.fast_dropout_class()(1.0)


def test_fused_lora_forward_is_peft_maths(tiny, tokenizer):
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.train.methods import peft_config_for

    params = TrainParams(r=4, alpha=8, dropout=0.1)
    ids = torch.tensor([tokenizer("a b c d e f")["input_ids"][:6], tokenizer("g h i j k l")["input_ids"][:6]])

    def run(fused: bool) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny), peft_config_for(params))
        for name, p in model.named_parameters():  # B starts at zero: make the adapter count
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.5)
        sft.use_fast_lora_dropout(model)
        if fused:
            assert sft.fuse_lora_forward(model) == 2 * 7
        model.eval()
        eval_logits = model(input_ids=ids).logits
        model.train()
        torch.manual_seed(1)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        return eval_logits.detach(), loss.detach(), grads

    plain, fused = run(False), run(True)
    assert not torch.equal(plain[0], run_base_logits(tiny, ids))  # the adapter changes outputs
    torch.testing.assert_close(fused[0], plain[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused[1], plain[1], rtol=1e-5, atol=1e-5)  # same dropout masks too
    assert fused[2].keys() == plain[2].keys() and len(plain[2]) == 2 * 2 * 7
    for name in plain[2]:
        torch.testing.assert_close(fused[2][name], plain[2][name], rtol=1e-4, atol=1e-6)

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny), peft_config_for(params))
    sft.fuse_lora_forward(model)
    with model.disable_adapter():  # peft's own paths still work through the patch
        torch.testing.assert_close(model(input_ids=ids).logits, run_base_logits(tiny, ids))


def run_base_logits(tiny, ids):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny).eval()(input_ids=ids).logits.detach()


def test_lora_dropout_is_swapped(tiny):
    params = TrainParams(r=4)
    model, restore = sft.load_for_training(tiny, params)
    restore()
    drops = [m for m in model.modules() if type(m).__name__ == "FastDropout"]
    assert len(drops) == 2 * 7  # 2 layers x 7 linear layers
    assert all(d.p == 0.05 for d in drops)

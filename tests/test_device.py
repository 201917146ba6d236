"""Device and precision of every local model use (harness/backends/device.py): goal keys, the
refusals before any work, bf16 beside fp32 end to end, cache keys that keep fp32 where it was,
gradient checkpointing, qlora bases, generation batch sizes and what each candidate records."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from harness.backends import device
from harness.backends.device import Placement, generation_batch_size, placement_problems, resolve_placement
from harness.errors import InputError
from harness.goals import load_goal
from harness.runner.validate import validate_goal
from harness.store import Store
from tests.helpers import ROOT, tiny_goal, write_yaml

CUDA_HERE = device.cuda_device_count() > 0


def _goal(tmp_path, model_dir, *, top=None, extra=(), judge=False, name="devrun"):
    """The tiny routing goal with goal-level keys ``top`` added (device, dtype, ...)."""
    path = tiny_goal(tmp_path, model_dir, judge=judge, extra_candidates=extra, name=name)
    doc = yaml.safe_load(path.read_text())
    doc.update(top or {})
    return write_yaml(path, doc)


def _line_of(path, text):
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if text in ln)


# --------------------------------------------------------------------------- resolving


def test_device_names_are_checked_and_auto_resolves_to_what_is_here():
    for ok in ("auto", "cpu", "cuda", "cuda:3", "mps", " CUDA:0 "):
        device.check_device(ok)
    for bad in ("gpu", "cuda:x", "tpu", 3, None):
        with pytest.raises(ValueError, match="auto, cpu, cuda, cuda:N or mps"):
            device.check_device(bad)
    if not CUDA_HERE and not device.mps_available():
        assert resolve_placement() == Placement("cpu", "float32")  # the current behaviour on a CPU
    assert Placement("cpu", "float32").tag == "" and Placement("cuda:0", "bfloat16").tag == "bfloat16"


def test_what_this_machine_cannot_run_is_refused(monkeypatch):
    monkeypatch.setattr(device, "cuda_device_count", lambda: 0)
    monkeypatch.setattr(device, "mps_available", lambda: False)
    assert placement_problems("cuda")[0][0] == "device" and "no CUDA GPU" in placement_problems("cuda")[0][1]
    assert placement_problems("mps")[0][0] == "device"
    assert placement_problems("cpu", "float16")[0][0] == "dtype"  # refused, not warned: see device.py
    assert placement_problems("auto", "float16")[0][0] == "dtype"  # auto is the CPU here
    assert placement_problems("cpu", "bfloat16") == [] and placement_problems("cpu", "float32") == []
    with pytest.raises(InputError, match=r"goal.yaml \[device\]:"):
        resolve_placement("cuda", where="goal.yaml")


def test_a_gpu_machine_resolves_auto_to_cuda_bf16_and_refuses_cuda_n_past_the_count(monkeypatch):
    monkeypatch.setattr(device, "cuda_device_count", lambda: 2)
    monkeypatch.setattr(device, "cuda_bf16", lambda index, native: True)
    assert resolve_placement() == Placement("cuda:0", "bfloat16")
    assert resolve_placement("cuda:1", "float16") == Placement("cuda:1", "float16")
    assert resolve_placement("cuda", "float32") == Placement("cuda:0", "float32")
    field, message = placement_problems("cuda:2")[0]
    assert field == "device" and "2 CUDA GPU(s), cuda:0..cuda:1" in message
    monkeypatch.setattr(device, "cuda_bf16", lambda index, native: False)  # a pre-Ampere GPU
    assert resolve_placement("cuda") == Placement("cuda:0", "float32")  # auto: no bf16, so fp32
    assert placement_problems("cuda", "bfloat16")[0][0] == "dtype"


def test_generation_batch_size_rule_of_thumb():
    smol = dict(layers=30, kv_heads=3, head_dim=64, hidden=576, intermediate=1536, vocab=49152, dtype_bytes=2)
    assert generation_batch_size(4 * 2**30, row_tokens=512, **smol) == 130
    assert generation_batch_size(8 * 2**30, row_tokens=512, **smol) == 256  # capped
    assert generation_batch_size(2**20, row_tokens=512, **smol) == 1  # never below one row
    half = generation_batch_size(2 * 2**30, row_tokens=1024, **smol)
    assert half < generation_batch_size(2 * 2**30, row_tokens=512, **smol) and half >= 30  # longer rows, fewer
    fp32 = dict(smol, dtype_bytes=4)
    assert generation_batch_size(4 * 2**30, row_tokens=512, **fp32) < 130


def test_on_the_cpu_generation_keeps_batches_of_16_unless_told(tiny_model_dir, monkeypatch):
    from harness.backends.local import DecodingParams, LocalModel

    model = LocalModel(str(tiny_model_dir), device="cpu", dtype="float32")
    sizes = []
    original = model._generate_batch
    monkeypatch.setattr(model, "_generate_batch", lambda rows, *a, **k: sizes.append(len(rows)) or original(rows, *a, **k))
    prompts = [[{"role": "user", "content": f"message {i} " * (1 + i % 3)}] for i in range(20)]
    model.generate(prompts, DecodingParams(max_new_tokens=2), progress=False)
    assert sizes == [16, 4]
    sizes.clear()
    model.generate(prompts, DecodingParams(max_new_tokens=2), progress=False, batch_size=5)
    assert sizes == [5, 5, 5, 5]


def test_local_model_loads_on_its_placement(tiny_model_dir):
    import torch

    from harness.backends.local import LocalModel, local_model_id

    bf16 = LocalModel(str(tiny_model_dir), device="cpu", dtype="bfloat16")
    assert bf16.model.dtype == torch.bfloat16 and bf16.runtime == {"device": "cpu", "dtype": "bfloat16",
                                                                    "quantization": None}
    assert bf16.model_hash == local_model_id(str(tiny_model_dir)) + "@bfloat16"
    if not CUDA_HERE:
        with pytest.raises(InputError, match=r"\[device\].*no CUDA GPU"):
            LocalModel(str(tiny_model_dir), device="cuda")
    with pytest.raises(InputError, match=r"\[dtype\].*float16 on the CPU"):
        LocalModel(str(tiny_model_dir), device="cpu", dtype="float16")


# --------------------------------------------------------------------------- refused before any work


@pytest.mark.skipif(CUDA_HERE, reason="this machine has a CUDA GPU")
def test_device_cuda_without_one_exits_2_before_any_work(tmp_path, tiny_model_dir):
    goal = _goal(tmp_path, tiny_model_dir, top={"device": "cuda"})
    shutil.copytree(ROOT / "rubrics", tmp_path / "rubrics")  # the goal's only problem is its device
    line = _line_of(goal, "device: cuda")
    db = tmp_path / "s.duckdb"
    for args in (["check", goal, "--no-tokenizer"], ["run", goal, "--dry-run", "--db", db],
                 ["run", goal, "--db", db]):
        r = subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                           cwd=tmp_path, timeout=300)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert f"{goal}:{line} [device]" in r.stderr and "no CUDA GPU" in r.stderr, r.stderr
    store = Store(db)
    assert store.count("runs") == 0 and store.count("predictions") == 0 and store.count("examples") == 0
    assert not (tmp_path / "adapters").exists()  # nothing trained (the work folder is the store's)


def test_candidate_overrides_are_checked_at_their_own_line(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(device, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(device, "cuda_bf16", lambda index, native: True)
    path = _goal(tmp_path, tiny_model_dir, top={"device": "cpu"}, judge=True, extra=[
        {"name": "half", "kind": "prompt", "dtype": "float16"},
        {"name": "second-gpu", "kind": "prompt", "device": "cuda:1"},
        {"name": "first-gpu-half", "kind": "prompt", "device": "cuda:0", "dtype": "float16"}])
    doc = yaml.safe_load(path.read_text())
    doc["judge"]["dtype"] = "float16"  # on the goal's cpu
    write_yaml(path, doc)
    with pytest.raises(InputError) as err:
        validate_goal(load_goal(path), ROOT / "rubrics")
    got = {(p.field, p.line) for p in err.value.problems}
    lines = path.read_text().splitlines()
    assert ("candidates[3].dtype", lines.index("  dtype: float16") + 1) in got
    assert ("candidates[4].device", lines.index("  device: cuda:1") + 1) in got
    assert ("judge.dtype", next(i for i, ln in enumerate(lines, 1) if ln.strip() == "dtype: float16"
                                and i > lines.index("judge:"))) in got
    assert len(err.value.problems) == 3  # float16 on cuda:0 is fine
    assert "1 CUDA GPU(s), cuda:0" in str(err.value)


def test_api_judge_takes_no_device(tmp_path, tiny_model_dir):
    path = _goal(tmp_path, tiny_model_dir, judge=True)
    doc = yaml.safe_load(path.read_text())
    doc["judge"] = {"model": "openai:gpt-4o-mini", "rubrics": ["instruction_following"], "device": "cpu"}
    write_yaml(path, doc)
    with pytest.raises(InputError, match=r"\[judge.device\]: device applies to a local judge only"):
        validate_goal(load_goal(path), ROOT / "rubrics")


def test_unknown_device_and_dtype_are_goal_file_errors(tmp_path, tiny_model_dir):
    path = _goal(tmp_path, tiny_model_dir, top={"device": "gpu", "dtype": "fp8"})
    with pytest.raises(InputError) as err:
        load_goal(path)
    fields = {p.field for p in err.value.problems}
    assert {"device", "dtype"} <= fields and "auto, cpu, cuda, cuda:N or mps" in str(err.value)


@pytest.mark.skipif(CUDA_HERE, reason="this machine can run qlora")
def test_qlora_to_train_without_cuda_stops_before_the_run_is_booked(tmp_path, tiny_model_dir):
    from harness.data.split import prepare
    from harness.runner import plan, run_goal

    path = _goal(tmp_path, tiny_model_dir, extra=[{"name": "q", "kind": "qlora", "r": 4, "max_length": 64}])
    goal, store = load_goal(path), Store(tmp_path / "s.duckdb")
    with pytest.raises(InputError, match=r"\[candidates\[3\]\.kind\]: qlora needs a CUDA GPU"):
        run_goal(goal, store, progress=False, work_dir=tmp_path / "work")
    assert store.count("runs") == 0 and store.count("predictions") == 0
    with pytest.raises(InputError, match="qlora needs a CUDA GPU"):  # --dry-run says so too
        plan(goal, store, prepare(goal, store, record=False), work_dir=tmp_path / "work")


# --------------------------------------------------------------------------- end to end


def test_fp32_and_bf16_run_end_to_end_and_record_where_they_ran(tmp_path, tiny_model_dir, monkeypatch):
    """One goal, ``device: cpu, dtype: float32``, with bf16 twins of zero-shot and the LoRA: both
    precisions generate, train, score and decide through ``run_goal``; the bf16 twin's outputs are
    mostly the fp32 ones (85% identical on this tiny model when measured); each candidate's row
    says where it ran; a rerun with the keys left at ``auto`` (fp32 here) regenerates nothing."""
    from harness.report import build_report
    from harness.results import results_dict
    from harness.runner import run_goal

    monkeypatch.chdir(ROOT)
    lora = {"kind": "lora", "r": 4, "alpha": 8, "learning_rate": 0.005, "epochs": 1, "batch_size": 8,
            "max_length": 64}
    path = _goal(tmp_path, tiny_model_dir, top={"device": "cpu", "dtype": "float32"}, extra=[
        {"name": "zero-shot-bf16", "kind": "prompt", "dtype": "bfloat16"},
        {"name": "lora-bf16", **lora, "dtype": "bfloat16", "generation_batch_size": 4}])
    goal, store = load_goal(path), Store(tmp_path / "s.duckdb")
    first = run_goal(goal, store, progress=False, work_dir=tmp_path / "work")
    assert first.counts["trained"] == 2
    rows = {c["name"]: c for c in store.candidates(first.run_id)}
    assert {n: (r["device"], r["dtype"]) for n, r in rows.items()} == {
        "zero-shot": ("cpu", "float32"), "few-shot": ("cpu", "float32"), "lora": ("cpu", "float32"),
        "zero-shot-bf16": ("cpu", "bfloat16"), "lora-bf16": ("cpu", "bfloat16")}
    assert all(r["peak_memory_mb"] > 0 and r["peak_memory_source"] == "process_peak_rss" for r in rows.values())
    assert all(r["quantization"] is None for r in rows.values())
    outputs = {c: [o["output"] for o in store.run_outputs(first.run_id, c)] for c in rows}
    for fp32, bf16 in (("zero-shot", "zero-shot-bf16"), ("lora", "lora-bf16")):
        same = sum(a == b for a, b in zip(outputs[fp32], outputs[bf16])) / len(outputs[fp32])
        assert same >= 0.3, (fp32, same)  # loosely: bf16 rounding flips some greedy tokens
    meta = json.loads(next((tmp_path / "work" / "adapters" / goal.goal).glob("lora-bf16-*/harness_adapter.json"))
                      .read_text())
    assert meta["runtime"] == {"device": "cpu", "dtype": "bfloat16", "quantization": None, "processes": 1}
    res = results_dict(store, goal.goal)
    by = {c["name"]: c for c in res["candidates"]}
    assert by["lora-bf16"]["runtime"]["dtype"] == "bfloat16" and by["lora"]["runtime"]["device"] == "cpu"
    assert "Where each candidate ran" in build_report(store, goal, fmt="md")

    doc = yaml.safe_load(path.read_text())
    del doc["device"], doc["dtype"]  # auto: cpu and float32 on this machine
    again = run_goal(load_goal(write_yaml(path, doc)), store, progress=False, work_dir=tmp_path / "work")
    if not CUDA_HERE:
        assert again.counts["generated"] == 0 and again.counts["trained"] == 0


# --------------------------------------------------------------------------- cache keys


def test_fp32_keeps_the_prediction_and_adapter_keys_it_always_had(tmp_path, tiny_model_dir):
    """float32 adds nothing to a key: the predictions and adapters stored before dtype existed
    are found by a rerun; bfloat16 gets keys of its own."""
    from harness.backends.modelhub import model_hash, resolve_model
    from harness.cache import content_key
    from harness.data.split import prepare
    from harness.kinds import kind_of
    from harness.kinds.train import artifact
    from harness.runner.context import Run
    from harness.runner.generation import local_prediction_keys
    from harness.train.sft import TRAINER_VERSION

    path = _goal(tmp_path, tiny_model_dir, top={"device": "cpu"},
                 extra=[{"name": "bf16", "kind": "prompt", "dtype": "bfloat16"}])
    goal = load_goal(path)
    store = Store(tmp_path / "s.duckdb")
    run = Run(goal, store, prepared=prepare(goal, store, record=False), progress=False, work_dir=tmp_path)
    prompts = kind_of("prompt")._prompts(run, goal.candidate("zero-shot"))
    base = model_hash(resolve_model(str(tiny_model_dir)).path)
    legacy = [content_key("prediction/v1", base, p, run.decoding().to_dict()) for p in prompts]
    assert local_prediction_keys(run, goal.candidate("zero-shot"), prompts) == (base, legacy)
    model_id, bf16_keys = local_prediction_keys(run, goal.candidate("bf16"), prompts)
    assert model_id == f"{base}@bfloat16" and not set(bf16_keys) & set(legacy)

    lora = goal.candidate("lora")
    params = kind_of(lora).options(lora).params
    legacy_params = {k: v for k, v in params.model_dump().items() if k != "gradient_checkpointing"}
    key = content_key("adapter/v1", TRAINER_VERSION, base, legacy_params, sorted(e.id for e in run.prepared.train),
                      sorted(e.id for e in run.prepared.validation))
    assert artifact(run, lora, params).folder.name == f"lora-{key[:12]}"
    checkpointed = params.model_copy(update={"gradient_checkpointing": True})
    assert artifact(run, lora, checkpointed).folder == artifact(run, lora, params).folder  # same weights
    bf16_lora = lora.model_copy(update={"dtype": "bfloat16"})
    assert artifact(run, bf16_lora, params).folder != artifact(run, lora, params).folder


def test_a_local_judge_names_its_precision_unless_float32(tmp_path, tiny_model_dir):
    from harness.data.split import prepare
    from harness.runner.context import Run
    from harness.runner.scoring import make_run_judge

    path = _goal(tmp_path, tiny_model_dir, top={"device": "cpu"}, judge=True)
    goal, store = load_goal(path), Store(tmp_path / "s.duckdb")
    prepared = prepare(goal, store, record=False)
    fp32 = make_run_judge(Run(goal, store, prepared=prepared, progress=False))[0].spec
    assert "@" not in fp32.split("#")[1]
    goal.judge.dtype = "bfloat16"
    assert make_run_judge(Run(goal, store, prepared=prepared, progress=False))[0].spec == fp32 + "@bfloat16"


# --------------------------------------------------------------------------- training


def test_gradient_checkpointing_trains_the_same_adapter(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    from harness.data.formats import make_example
    from harness.train.methods import TrainParams
    from harness.train.sft import load_for_training, train_adapter

    examples = [make_example("chat", [{"role": "user", "content": f"route message {i}"}],
                             ["billing", "shipping"][i % 2]) for i in range(16)]
    params = dict(method="lora", r=4, max_steps=3, batch_size=4, max_length=32, dropout=0.1, learning_rate=0.01)
    cpu = Placement("cpu", "float32")
    weights = []
    for gc in (False, True):
        p = TrainParams(**params, gradient_checkpointing=gc)
        out = train_adapter(str(tiny_model_dir), examples[:12], examples[12:], p, tmp_path / f"gc{gc}",
                            progress=False, placement=cpu)
        weights.append(load_file(str(out.adapter_path / "adapter_model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert (weights[0][name] - weights[1][name]).abs().max() < 1e-5, name
    model, restore = load_for_training(tiny_model_dir, TrainParams(**params, gradient_checkpointing=True), cpu)
    runs = []  # each checkpointed layer body: once in the forward, once more in the backward
    for layer in [m for m in model.modules() if type(m).__name__ == "LlamaDecoderLayer"]:
        checkpoint = layer._gradient_checkpointing_func

        def counted(fn, *args, checkpoint=checkpoint, **kwargs):
            return checkpoint(lambda *a, **k: runs.append(1) or fn(*a, **k), *args, **kwargs)

        layer._gradient_checkpointing_func = counted
    from transformers import AutoTokenizer

    from harness.train.sft import collate, encode_example

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    loss, _ = model(**collate([encode_example(tokenizer, e, 32) for e in examples[:4]], 0), answer_loss=True)
    assert len(runs) == 2  # two layers
    loss.backward()
    assert len(runs) == 4  # recomputed
    restore()


def test_gradient_checkpointing_is_refused_for_prefix_tuning():
    from pydantic import ValidationError

    from harness.train.methods import TrainParams

    with pytest.raises(ValidationError, match="gradient_checkpointing does not work with prefix"):
        TrainParams(method="prefix", gradient_checkpointing=True)
    assert TrainParams(method="prompt", gradient_checkpointing=True).gradient_checkpointing


def test_bf16_training_keeps_lora_weights_in_fp32(tiny_model_dir):
    import torch

    from harness.train.methods import TrainParams
    from harness.train.sft import load_for_training

    model, restore = load_for_training(tiny_model_dir, TrainParams(r=4), Placement("cpu", "bfloat16"))
    trainable = {p.dtype for p in model.parameters() if p.requires_grad}
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert trainable == {torch.float32} and frozen == {torch.bfloat16}
    restore()


# --------------------------------------------------------------------------- qlora bases


def test_a_qlora_adapter_generates_on_a_4bit_base_only_where_bitsandbytes_runs(tmp_path, tiny_model_dir,
                                                                               monkeypatch):
    """On the CPU a qlora adapter runs on the full-precision base, as before, and says so
    (``quantization: none``, the fp32 id it always had); where bitsandbytes can run, its base
    loads with the training's BitsAndBytesConfig and its id names nf4."""
    from harness.backends import local
    from harness.backends.local import LocalModel, adapter_quantization, precision_tag
    from harness.data.formats import make_example
    from harness.train.methods import TrainParams, four_bit_load_kwargs
    from harness.train.sft import train_adapter

    examples = [make_example("chat", [{"role": "user", "content": f"hi {i}"}], "billing") for i in range(6)]
    trained = train_adapter(str(tiny_model_dir), examples, [], TrainParams(r=4, max_steps=1, max_length=32),
                            tmp_path / "lora", progress=False, placement=Placement())
    q = tmp_path / "qlora"
    shutil.copytree(trained.adapter_path, q)
    meta = json.loads((q / "harness_adapter.json").read_text())
    (q / "harness_adapter.json").write_text(json.dumps(dict(meta, method="qlora")))
    cpu = Placement("cpu", "float32")
    assert adapter_quantization(cpu, trained.adapter_path) is None and adapter_quantization(cpu, None) is None
    assert adapter_quantization(cpu, q) == "none"
    on_cpu = LocalModel(str(tiny_model_dir), adapter=q, placement=cpu)
    assert on_cpu.quantization == "none" and "@" not in on_cpu.model_hash
    gpu = Placement("cuda:1", "bfloat16")
    monkeypatch.setattr(local, "four_bit_problem", lambda placement: None)  # as on a GPU with bitsandbytes
    assert adapter_quantization(gpu, q) == "nf4" and precision_tag(gpu, "nf4") == "nf4-bfloat16"
    load = four_bit_load_kwargs(gpu)
    assert load["device_map"] == {"": 1} and load["quantization_config"].bnb_4bit_quant_type == "nf4"


# --------------------------------------------------------------------------- embeddings


def test_embeddings_load_once_per_device(monkeypatch):
    from harness.metrics import semantic

    loaded = []

    def fake(batch_size=64, device="cpu"):
        loaded.append(device)
        return lambda texts: __import__("numpy").ones((len(texts), 3))

    monkeypatch.setattr(semantic, "_load_encoder", fake)
    monkeypatch.setattr(semantic, "_LOADED", {})
    monkeypatch.setattr(semantic, "_DEVICE", "cpu")
    semantic.embed(["a"]), semantic.embed(["b"], "cuda:0"), semantic.embed(["c"])
    semantic.use_device("cuda:0")
    semantic.embed(["d"])
    assert loaded == ["cpu", "cuda:0"]

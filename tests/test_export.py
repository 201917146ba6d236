"""Export: adapter copy and merged model reload and give the adapter model's greedy output."""
from __future__ import annotations

import shlex

import pytest

from harness.data.formats import make_example
from harness.errors import HarnessError
from harness.train import TrainParams, adapter_hash, export_adapter, read_metadata, train_adapter

PROMPT = [{"role": "user", "content": "What is 3 plus 3?"}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from harness.backends.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _train(tiny, root, method, lr, **kw):
    train = [make_example("chat", [{"role": "user", "content": f"What is {i} plus {i}?"}], f"It is {2 * i}.")
             for i in range(8)]
    params = TrainParams(method=method, learning_rate=lr, max_steps=6, batch_size=4, num_virtual_tokens=4, **kw)
    out = root / method
    train_adapter(str(tiny), train, train[:2], params, out, progress=False, threads=1)
    return out


@pytest.fixture(scope="module")
def lora_dir(tiny, tmp_path_factory):
    return _train(tiny, tmp_path_factory.mktemp("adapters"), "lora", 2e-2, r=32, alpha=64)


def _greedy(model, tokenizer, n=8):
    import torch

    text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        logits = model(**ids).logits[0, -1]
    return out[0, ids["input_ids"].shape[1]:].tolist(), logits


def _adapter_model(tiny, adapter):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    return PeftModel.from_pretrained(base, adapter).eval()


def test_adapter_export_reloads_and_says_how_to_serve(tiny, lora_dir, tmp_path):
    from transformers import AutoTokenizer

    res = export_adapter(lora_dir, tmp_path / "My Adapter")
    out = res.path
    assert (out / "adapter_model.safetensors").is_file() and adapter_hash(out) == adapter_hash(lora_dir)
    assert read_metadata(out)["adapter_hash"] == adapter_hash(lora_dir)

    tok = AutoTokenizer.from_pretrained(tiny)
    want, want_logits = _greedy(_adapter_model(tiny, lora_dir), tok)
    got, got_logits = _greedy(_adapter_model(tiny, out), tok)
    assert got == want and got_logits.equal(want_logits)

    base = str(tiny.resolve())
    serve = (out / "SERVE.md").read_text()
    modelfile = (out / "Modelfile").read_text()
    assert modelfile == f"FROM {base}\nADAPTER {out}\n"
    assert res.commands["vllm"] == (f"vllm serve {base} --enable-lora --lora-modules my-adapter='{out}' "
                                    "--max-lora-rank 32")  # rank 32 > vLLM's default limit of 16
    assert res.commands["ollama"].startswith(f"ollama create my-adapter -f '{out}/Modelfile'")
    assert "PeftModel.from_pretrained(base, " + repr(str(out)) in res.commands["peft"]
    for text in (res.commands["vllm"], res.commands["ollama"].splitlines()[0], modelfile.strip(), base, str(out)):
        assert text in serve
    # The peft snippet in SERVE.md runs as written.
    snippet = res.commands["peft"]
    scope: dict = {}
    exec(snippet, scope)
    assert _greedy(scope["model"].eval(), scope["tokenizer"])[0] == want


def test_merged_export_gives_the_adapters_greedy_output(tiny, lora_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    res = export_adapter(lora_dir, tmp_path / "merged", merged=True)
    out = res.path
    assert res.merged and (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "adapter_config.json").exists()
    from harness.train.seen import read_seen

    assert read_seen(out) == read_seen(lora_dir) and read_seen(out).ids  # what it saw goes with the weights

    tok = AutoTokenizer.from_pretrained(tiny)
    want, want_logits = _greedy(_adapter_model(tiny, lora_dir), tok)
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    got, got_logits = _greedy(merged, AutoTokenizer.from_pretrained(out))
    assert got == want
    assert torch.allclose(got_logits, want_logits, atol=1e-4)
    base_logits = _greedy(AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval(), tok)[1]
    assert not torch.allclose(base_logits, want_logits, atol=1e-3)  # the merge carried the adapter

    assert (out / "Modelfile").read_text() == f"FROM {out}\n"
    assert res.commands["vllm"].startswith(f"vllm serve {shlex.quote(str(out))} ")
    assert "--enable-lora" not in res.commands["vllm"]
    assert res.commands["vllm"] in (out / "SERVE.md").read_text()
    assert read_metadata(out)["merged_from"] == str(lora_dir.resolve())


def test_prompt_learning_cannot_merge_and_is_served_with_peft(tiny, tmp_path):
    prefix = _train(tiny, tmp_path, "prefix", 3e-2)
    with pytest.raises(HarnessError, match="cannot be merged"):
        export_adapter(prefix, tmp_path / "merged", merged=True)
    assert not (tmp_path / "merged").exists()
    res = export_adapter(prefix, tmp_path / "exported")
    assert set(res.commands) == {"peft"} and not (res.path / "Modelfile").exists()
    assert "do not serve prefix adapters" in (res.path / "SERVE.md").read_text()


def test_full_model_export_and_refusals(tiny, tmp_path):
    full = _train(tiny, tmp_path, "full", 3e-3)
    res = export_adapter(full, tmp_path / "full-export")
    assert res.merged and (res.path / "Modelfile").read_text() == f"FROM {res.path}\n"
    assert adapter_hash(res.path) == adapter_hash(full)
    # Re-exporting over an earlier export is fine; over an unrelated folder it is not.
    export_adapter(full, tmp_path / "full-export")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(HarnessError, match="refusing to overwrite"):
        export_adapter(full, tmp_path / "other")
    with pytest.raises(HarnessError, match="does not exist"):
        export_adapter(tmp_path / "missing", tmp_path / "x")


@pytest.mark.parametrize("damage", ["harness_adapter.json", "adapter_config.json"])
def test_export_of_a_damaged_adapter_is_a_clear_error_not_a_traceback(tmp_path, damage):
    """Issue 11: a truncated harness_adapter.json made `harness export` die with JSONDecodeError."""
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.store import Store
    from tests.helpers import chat, write_goal, write_jsonl

    data = write_jsonl(tmp_path / "d.jsonl", [chat(f"q{i}", "a") for i in range(10)])
    goal = write_goal(tmp_path, data, extra_candidates=[{"name": "lora", "kind": "lora"}])
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "harness_adapter.json").write_text('{"format": 1, "method": "lora", "base_model": {"path": "x"}}')
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8}')
    (adapter / damage).write_text('{"format": 1, "method": "lo')  # truncated mid-write
    store = Store(tmp_path / "s.duckdb")
    store.start_run({"run_id": "r1", "goal": "t"})
    store.put_candidate("r1", {"name": "lora", "kind": "lora", "adapter_path": str(adapter)})
    result = CliRunner().invoke(app, ["export", str(goal), "lora", "--db", str(tmp_path / "s.duckdb"),
                                      "--out", str(tmp_path / "out")])
    out = (result.stdout or "") + (result.stderr or "")
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2 and str(adapter / damage) in out.replace("\n", "") and "damaged" in out, out
    assert not (tmp_path / "out").exists()


def test_an_exported_adapter_names_its_base_by_hub_id_where_known(lora_dir, tmp_path):
    """The default model's adapter records HuggingFaceTB/SmolLM2-135M-Instruct (not the machine-local
    folder it was trained from) in adapter_config.json and the serve commands; a hub-cache base
    its org/name; a model folder of one's own stays a path."""
    import json
    import shutil

    from harness.train.export import base_hub_id, describe_adapter

    adapter = tmp_path / "default-base"
    shutil.copytree(lora_dir, adapter)
    meta_file = adapter / "harness_adapter.json"
    meta = json.loads(meta_file.read_text())
    meta["base_model"].update(name="SmolLM2-135M-Instruct", path="/home/u/.cache/harness/models/SmolLM2-135M-Instruct")
    meta_file.write_text(json.dumps(meta))
    res = export_adapter(adapter, tmp_path / "out")
    config = json.loads((res.path / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "from_pretrained('HuggingFaceTB/SmolLM2-135M-Instruct'" in res.commands["peft"]
    assert res.commands["vllm"].startswith("vllm serve HuggingFaceTB/SmolLM2-135M-Instruct --enable-lora")
    assert "/home/u/.cache" not in res.commands["peft"] + res.commands["vllm"]

    src = describe_adapter(lora_dir)
    src.base_name, src.base_path = "abc123", "/h/hub/models--Qwen--Qwen2.5-0.5B-Instruct/snapshots/abc123"
    assert base_hub_id(src) == "Qwen/Qwen2.5-0.5B-Instruct"
    own = export_adapter(lora_dir, tmp_path / "own")  # the tiny model: a folder of one's own
    assert base_hub_id(describe_adapter(lora_dir)) is None
    assert json.loads((own.path / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        json.loads((lora_dir / "adapter_config.json").read_text())["base_model_name_or_path"]


def test_the_printed_peft_snippet_is_python_at_any_terminal_width(tiny, lora_dir, tmp_path):
    """`harness export` prints each command verbatim: at 60 columns the peft snippet still compiles."""
    import os
    import subprocess
    import sys

    from harness.store import Store
    from tests.helpers import ROOT, chat, write_goal, write_jsonl

    goal = write_goal(tmp_path, write_jsonl(tmp_path / "d.jsonl", [chat(f"q{i}", "a") for i in range(10)]),
                      extra_candidates=[{"name": "lora", "kind": "lora"}])
    store = Store(tmp_path / "s.duckdb")
    store.start_run({"run_id": "r1", "goal": "t"})
    store.put_candidate("r1", {"name": "lora", "kind": "lora", "adapter_path": str(lora_dir)})
    deep = tmp_path / ("a-rather-long-folder-name-" * 3) / "exported"
    r = subprocess.run([sys.executable, "-m", "harness", "export", str(goal), "lora", "--db", str(tmp_path / "s.duckdb"),
                        "--out", str(deep)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, COLUMNS="60"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    start = lines.index("peft:") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].rstrip().endswith(":") and " " not in lines[i]),
               len(lines))
    snippet = "\n".join(lines[start:end])
    assert f"PeftModel.from_pretrained(base, {str(deep)!r})" in snippet
    compile(snippet, "<printed peft snippet>", "exec")

"""Fine-tuning: config handling, bad input caught before training, and one real few-step LoRA run on the
embedded Gemma 3 270M whose GGUF adapter is loaded back through the llama.cpp backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emplifai import finetune
from emplifai.dataset.ingest import import_file
from emplifai.dataset.splits import make_split
from emplifai.errors import UserError
from emplifai.records import Action, Status
from emplifai.store import repo
from emplifai.store.db import Store
from tests.helpers import record, write_jsonl

REPO = Path(__file__).resolve().parents[2]


def _fill(store: Store, tmp_path: Path, n: int = 60, split: bool = True) -> None:
    import_file(store, write_jsonl(tmp_path / "d.jsonl", [record(i) for i in range(n)]))
    if split:
        make_split(store, seed=42)


# ------------------------------------------------------------------------------------------------ config
def test_cpu_config_file_is_the_default() -> None:
    assert finetune.load_config(REPO / "configs" / "finetune-cpu.yaml") == finetune.FinetuneConfig()


def test_gpu_config_loads_with_bf16_and_checkpointing() -> None:
    cfg = finetune.load_config(REPO / "configs" / "finetune-gpu.yaml", ["base_model=/models/llm-jp"])
    assert cfg.dtype == "bfloat16" and cfg.gradient_checkpointing and cfg.device == "cuda"
    assert cfg.base_model == "/models/llm-jp"


def test_toml_and_overrides(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('epochs = 3.0\n[lora]\nr = 4\n', encoding="utf-8")
    cfg = finetune.load_config(p, ["lora.alpha=8", "max_train_examples=null", "learning_rate=1e-3"])
    got = (cfg.epochs, cfg.lora.r, cfg.lora.alpha, cfg.max_train_examples, cfg.learning_rate)
    assert got == (3.0, 4, 8.0, None, 1e-3)


def test_unknown_config_key_is_named(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("epochs: 1\nlearning_rat: 0.1\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"c\.yaml: learning_rat: unknown setting"):
        finetune.load_config(p)
    with pytest.raises(UserError, match=r"lora\.rank: unknown setting"):
        finetune.load_config(None, ["lora.rank=4"])
    with pytest.raises(UserError, match="key=value"):
        finetune.load_config(None, ["epochs"])


def test_bad_value_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="epochs"):
        finetune.load_config(None, ["epochs=-1"])
    with pytest.raises(UserError, match="not found"):
        finetune.load_config(tmp_path / "nope.yaml")


# ------------------------------------------------------------------------------------- bad input (data)
def test_missing_split_says_how_to_make_one(store: Store, db_url: str, tmp_path: Path) -> None:
    _fill(store, tmp_path, split=False)
    with pytest.raises(UserError, match="emplifai dataset split"):
        finetune.run(finetune.FinetuneConfig(), tmp_path / "out", db_url)
    assert not (tmp_path / "out").exists()  # nothing written before the check


def test_empty_training_split(store: Store, db_url: str, tmp_path: Path) -> None:
    _fill(store, tmp_path)
    with store.transaction() as s:
        ids = [r.dialogue_id for r in repo.iter_records(s, split="train")]
        for d in ids:
            repo.set_status(s, d, Status.REMOVED, actor="test", action=Action.REMOVE)
    with pytest.raises(UserError, match=r"training split .* is empty"):
        finetune.run(finetune.FinetuneConfig(), tmp_path / "out", db_url)


def test_examples_are_instruction_and_dialogue(store: Store, db_url: str, tmp_path: Path) -> None:
    from emplifai.prompts import generation

    _fill(store, tmp_path)
    cfg = finetune.FinetuneConfig(max_train_examples=None, max_eval_examples=None)
    train, _, _ = finetune.load_examples(db_url, cfg)
    with store.transaction() as s:
        rec = {r.dialogue_id: r for r in repo.iter_records(s, split="train")}
    assert len(train) == len(rec) > 0
    ex = train[0]
    r = rec[ex.dialogue_id]
    assert ex.prompt == f"<start_of_turn>user\n{generation.instruction(r.emotion, r.situation)}<end_of_turn>\n" \
                        "<start_of_turn>model\n"
    assert ex.completion == generation.format_dialogue(r.patient, r.supporter) + "<end_of_turn><eos>"
    sub, _, _ = finetune.load_examples(db_url, finetune.FinetuneConfig(max_train_examples=5, seed=1))
    again, _, _ = finetune.load_examples(db_url, finetune.FinetuneConfig(max_train_examples=5, seed=1))
    assert len(sub) == 5 and sub == again  # seeded subset


def test_unloadable_base_model(sqlite_url: str, tmp_path: Path) -> None:
    store = Store(sqlite_url)
    _fill(store, tmp_path)
    store.dispose()
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(UserError, match=r"cannot be loaded: no config\.json"):
        finetune.run(finetune.FinetuneConfig(base_model=str(empty)), tmp_path / "out", sqlite_url)
    (empty / "config.json").write_text('{"model_type": "no-such-arch"}', encoding="utf-8")
    with pytest.raises(UserError, match="cannot be loaded"):
        finetune.run(finetune.FinetuneConfig(base_model=str(empty)), tmp_path / "out2", sqlite_url)


def test_gguf_arch_mapping() -> None:
    assert finetune.gguf_arch("gemma3_text") == "gemma3" and finetune.gguf_arch("mistral") == "llama"
    with pytest.raises(UserError, match="convert_lora_to_gguf"):
        finetune.gguf_arch("mamba")


def test_llama_qk_permutation_matches_llama_cpp() -> None:
    import numpy as np

    # convert_hf_to_gguf's LlamaModel.permute on a (rows, cols) matrix, written out independently
    w = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
    n_head = 2
    expected = w.reshape(n_head, 2, 16 // n_head // 2, 3).swapaxes(1, 2).reshape(16, 3)
    assert np.array_equal(finetune.permute_qk_rows(w, n_head), expected)
    assert not np.array_equal(expected, w)


# --------------------------------------------------------------------------------------- real training
TINY = ["max_train_examples=4", "max_eval_examples=2", "max_steps=3", "grad_accum=1", "learning_rate=0.005",
        "warmup_ratio=0.0", "save_steps=2", "logging_steps=1", "eval_batch_size=2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[finetune.FinetuneResult, str, Path]:
    tmp = tmp_path_factory.mktemp("ft")
    url = f"sqlite:///{tmp / 'ft.db'}"
    store = Store(url)
    import_file(store, __import__("emplifai.dataset.ingest", fromlist=["bundled_corpus_path"]).bundled_corpus_path())
    make_split(store, seed=42)
    store.dispose()
    result = finetune.run(finetune.load_config(None, TINY), tmp / "out", url, progress=False)
    return result, url, tmp


@pytest.mark.slow
def test_training_changes_lora_only_and_masks_the_prompt(trained: tuple[finetune.FinetuneResult, str, Path]) -> None:
    import numpy as np
    from safetensors.numpy import load_file

    result, _, _ = trained
    m = result.metrics
    assert m["steps"] == 3
    fp = m["fingerprints"]
    assert fp["lora_before"] != fp["lora_after"]  # LoRA weights changed
    weights = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    b = [v for k, v in weights.items() if ".lora_B." in k]
    assert len(b) == 18 * 4 and max(float(np.abs(x).max()) for x in b) > 0  # B starts at exactly zero
    # base weights: fingerprint recomputed from the base folder equals the one taken during training
    model, _ = finetune.load_base(finetune.FinetuneConfig(), finetune.resolve_base(finetune.FinetuneConfig()))
    assert finetune.weights_fingerprint(model, lora=False) == fp["base"]
    mask = m["loss_mask"]
    assert mask["target_tokens"] > 0 and mask["examples_without_target"] == 0
    assert 0.1 < mask["target_share"] < 0.6  # the instruction is masked, the dialogue is not
    assert mask["first_target_text"].startswith("患者：") and "\n支援者：" in mask["first_target_text"]
    assert len(m["eval_losses"]) == 2 and m["eval_loss_before"] == m["eval_losses"][0]["eval_loss"]
    out = result.out
    for name in ("config.yaml", "metrics.json", "loss.png", "adapter.gguf", "adapter/adapter_config.json"):
        assert (out / name).is_file(), name
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "metrics.json").read_text())["spec"] == f"embedded+lora:{out / 'adapter.gguf'}"
    assert finetune.config_yaml(finetune.load_config(None, TINY)) == (out / "config.yaml").read_text()


@pytest.mark.slow
def test_gguf_adapter_changes_llama_cpp_output(trained: tuple[finetune.FinetuneResult, str, Path]) -> None:
    import torch
    from peft import PeftModel

    from emplifai.llm import GenParams, load

    result, _, _ = trained
    from emplifai.prompts.generation import instruction

    situation = "通院のとき、看護師さんが薬の飲み方を丁寧に説明してくれた。"
    prompt = finetune.prompt_text("Gratitude", situation)
    target = finetune.completion_text("説明が丁寧で安心しました。", "それは心強かったですね。", "chat", "")
    params = GenParams(max_tokens=24, seed=7)
    msgs = [{"role": "user", "content": instruction("Gratitude", situation)}]
    with load("embedded") as base, load(result.spec) as tuned:
        assert tuned.signature()["adapter"] == "adapter.gguf"
        text_base, text_tuned = base.chat(msgs, params).text, tuned.chat(msgs, params).text
        s_base, s_tuned = base.score(prompt, [target])[0], tuned.score(prompt, [target])[0]
    assert text_base != text_tuned
    assert abs(s_tuned - s_base) > 1.0
    # The conversion is right, not just "different": llama.cpp with the adapter agrees with transformers + PEFT
    # (both run the same dequantised Q4 weights) far closer than the adapter moves the score.
    model, tok = finetune.load_base(finetune.FinetuneConfig(), finetune.resolve_base(finetune.FinetuneConfig()))
    peft_model = PeftModel.from_pretrained(model, str(result.adapter_dir)).eval()
    p_ids, f_ids = tok(prompt)["input_ids"], tok(prompt + target)["input_ids"]
    with torch.no_grad():
        logp = peft_model(torch.tensor([f_ids])).logits[0].log_softmax(-1)
    s_hf = float(sum(logp[i - 1, f_ids[i]] for i in range(len(p_ids), len(f_ids))))
    assert abs(s_hf - s_tuned) < 0.25 * abs(s_tuned - s_base) + 0.3


@pytest.mark.slow
def test_rerun_resumes_from_last_checkpoint(trained: tuple[finetune.FinetuneResult, str, Path]) -> None:
    import shutil

    import numpy as np
    from safetensors.numpy import load_file

    result, url, _ = trained
    first = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    # a finished run is not redone; a missing GGUF adapter is re-exported
    (result.out / "adapter.gguf").unlink()
    same = finetune.run(finetune.load_config(None, TINY), result.out, url, progress=False)
    assert same.metrics == result.metrics and (result.out / "adapter.gguf").is_file()
    # an interrupted run (killed after step 2's checkpoint) resumes there and finishes the remaining step
    ckpts = result.out / "checkpoints"
    assert (ckpts / "checkpoint-2").is_dir() and (ckpts / "checkpoint-3").is_dir()
    shutil.rmtree(ckpts / "checkpoint-3")
    for name in ("metrics.json", "adapter.gguf"):
        (result.out / name).unlink()
    shutil.rmtree(result.adapter_dir)
    again = finetune.run(finetune.load_config(None, TINY), result.out, url, progress=False)
    assert again.metrics["resumed_from"].endswith("checkpoint-2")
    assert again.metrics["steps"] == 3 and again.metrics["eval_loss_before"] is None
    resumed = load_file(str(again.adapter_dir / "adapter_model.safetensors"))
    assert all(np.allclose(first[k], resumed[k], rtol=1e-3, atol=1e-6) for k in first)
    with pytest.raises(UserError, match="different config"):
        finetune.run(finetune.load_config(None, [*TINY, "seed=1"]), result.out, url, progress=False)


@pytest.mark.slow
def test_prompt_filling_max_length_is_refused_before_training(
        trained: tuple[finetune.FinetuneResult, str, Path]) -> None:
    _, url, tmp = trained
    with pytest.raises(UserError, match=r"loss mask|no target token"):
        finetune.run(finetune.load_config(None, [*TINY, "max_length=64"]), tmp / "short", url, progress=False)
    assert not list((tmp / "short" / "checkpoints").glob("checkpoint-*"))  # no step was taken

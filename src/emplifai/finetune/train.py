"""LoRA supervised fine-tuning on the training split (the paper's SFT experiment), with TRL + PEFT.

One example per training dialogue: the crowd-worker instruction for its emotion and situation is the prompt,
the two-turn dialogue in the generation format (``患者：…\\n支援者：…``) is the completion. The loss covers the
completion tokens only; before training we check that this mask is not empty, because a mask that silently
covers nothing trains on nothing (loss 0.0) and still "succeeds".

The same code path fine-tunes the embedded Gemma 3 270M on 2 CPU cores (``configs/finetune-cpu.yaml``, the
defaults of :class:`FinetuneConfig`) and any Hugging Face causal LM on a GPU (``configs/finetune-gpu.yaml``).

Output folder::

    DIR/config.yaml      the resolved config (a rerun with a different config refuses to mix runs)
    DIR/checkpoints/     Trainer checkpoints; a rerun resumes from the last one
    DIR/adapter/         the PEFT adapter (safetensors + adapter_config.json)
    DIR/adapter.gguf     the same adapter for llama.cpp: model spec ``embedded+lora:DIR/adapter.gguf``
    DIR/metrics.json     losses, tokens/s, peak RSS, mask statistics, provenance (versions, hashes, seed)
    DIR/loss.png         training and validation loss curves
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import resource
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emplifai.errors import UserError
from emplifai.provenance import dist_version

FINETUNE_VERSION = "finetune-v1"
EMBEDDED = "embedded"


# ----------------------------------------------------------------------------------------------- config
class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, ge=1, description="LoRA rank")
    alpha: float = Field(16.0, gt=0, description="LoRA alpha; the update is scaled by alpha / r")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Linear layers that get an adapter (names as in the HF model; attention + MLP both work)",
    )


class FinetuneConfig(BaseModel):
    """Every setting of a fine-tuning run. The defaults are the CPU config (configs/finetune-cpu.yaml)."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(
        EMBEDDED, description="'embedded' (Gemma 3 270M, converted from its GGUF once) or an HF model folder / id"
    )
    base_gguf: str | None = Field(
        None, description="GGUF of the same base model for llama.cpp inference; 'embedded' needs none"
    )
    prompt_format: Literal["chat", "plain"] = Field(
        "chat", description="chat: Gemma chat turns, as LLM.chat() sends them; plain: raw text, as complete()"
    )
    lang: Literal["ja", "en"] = "ja"
    split_name: str = Field("default", description="split manifest to read the train/validation splits from")
    max_train_examples: int | None = Field(192, ge=1, description="random subset of the train split (seeded)")
    max_eval_examples: int | None = Field(48, ge=1, description="random subset of the validation split")
    max_length: int = Field(512, ge=16, description="tokens per example; longer ones are truncated")
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="stop after this many optimizer steps (-1: run all epochs)")
    batch_size: int = Field(1, ge=1)
    eval_batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(4, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(0.05, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    seed: int = 42
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    gradient_checkpointing: bool = False
    attn_implementation: str | None = Field(None, description="e.g. sdpa, eager, flash_attention_2")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: all cores)")
    logging_steps: int = Field(5, ge=1)
    save_steps: int = Field(20, ge=1, description="checkpoint every N optimizer steps (for resuming)")
    save_total_limit: int = Field(2, ge=1)
    eval_before_training: bool = Field(True, description="validation loss of the untouched base at step 0")
    gguf_adapter: bool = Field(True, description="also write adapter.gguf for llama.cpp")


def load_config(path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()) -> FinetuneConfig:
    """Read a YAML or TOML config (or the defaults), apply ``key=value`` overrides (dotted keys, YAML values)."""
    import yaml

    data: dict[str, Any] = {}
    source = "defaults"
    from_cli: set[str] = set()
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise UserError(f"config file not found: {p}")
        text = p.read_text(encoding="utf-8")
        try:
            if p.suffix.lower() == ".toml":
                import tomllib

                data = tomllib.loads(text)
            else:
                data = yaml.safe_load(text) or {}
        except (yaml.YAMLError, ValueError) as exc:
            raise UserError(f"{p}: not valid {'TOML' if p.suffix.lower() == '.toml' else 'YAML'}: {exc}") from exc
        if not isinstance(data, dict):
            raise UserError(f"{p}: the config must be a mapping of settings")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {item!r}")
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item!r}: {part!r} is not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
        from_cli.add(key.strip())
    try:
        return FinetuneConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            field = ".".join(str(x) for x in e["loc"])
            msg = "unknown setting" if e["type"] == "extra_forbidden" else e["msg"]
            lines.append(f"  {'--set' if field in from_cli else source}: {field}: {msg}")
        known = ", ".join(FinetuneConfig.model_fields)
        raise UserError("bad fine-tuning config:\n" + "\n".join(lines) + f"\nknown settings: {known}") from exc


def config_yaml(cfg: FinetuneConfig) -> str:
    import yaml

    return yaml.safe_dump(cfg.model_dump(mode="json"), allow_unicode=True, sort_keys=False)


# ---------------------------------------------------------------------------------------------- examples
@dataclass(frozen=True)
class Example:
    dialogue_id: str
    prompt: str
    completion: str


def prompt_text(emotion: str, situation: str, prompt_format: str = "chat", lang: str = "ja",
                tokenizer: Any = None) -> str:
    """The model input: exactly what generation sends. chat: one user turn, through the tokenizer's chat
    template when it has one (any HF model), else the Gemma template the llama.cpp backend uses."""
    from emplifai.llm import _local
    from emplifai.llm.base import Message
    from emplifai.prompts import generation

    inst = generation.instruction(emotion, situation, lang=lang)  # type: ignore[arg-type]
    if prompt_format == "plain":
        return inst + "\n\n"
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": inst}], tokenize=False,
                                             add_generation_prompt=True)
    return _local.render_gemma([Message(role="user", content=inst)])


def completion_text(patient: str, supporter: str, prompt_format: str, eos: str, tokenizer: Any = None) -> str:
    """The target: the dialogue in the generation format, then the end of the model's turn."""
    from emplifai.prompts import generation

    dialogue = generation.format_dialogue(patient, supporter)
    if prompt_format == "plain":
        return dialogue + eos
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        # whatever the template writes after the assistant text (its end-of-turn marker), then EOS
        msgs = [{"role": "user", "content": "x"}, {"role": "assistant", "content": dialogue}]
        full = tokenizer.apply_chat_template(msgs, tokenize=False)
        end = full[full.rindex(dialogue) + len(dialogue):].rstrip("\n")
        return dialogue + end + ("" if end.endswith(eos) else eos)
    return dialogue + "<end_of_turn>" + eos  # llama.cpp stops on <end_of_turn> (an end-of-generation token)


def load_examples(db: str | None, cfg: FinetuneConfig, eos: str = "<eos>",
                  tokenizer: Any = None) -> tuple[list[Example], list[Example], int]:
    """(train, validation, manifest id) from the stored split. Errors name the missing step."""
    from emplifai.store import repo
    from emplifai.store.db import open_store

    store = open_store(db)
    try:
        with store.transaction() as s:
            manifest = repo.latest_manifest(s, cfg.split_name)
            if manifest is None:
                raise UserError(
                    f"no split named {cfg.split_name!r} in the database; run `emplifai dataset split` first "
                    "(fine-tuning reads its train and validation splits)"
                )
            out = {}
            for split in ("train", "validation"):
                out[split] = [
                    Example(r.dialogue_id, prompt_text(r.emotion, r.situation, cfg.prompt_format, cfg.lang, tokenizer),
                            completion_text(r.patient, r.supporter, cfg.prompt_format, eos, tokenizer))
                    for r in repo.iter_records(s, split=split, manifest=manifest)
                ]
            manifest_id = manifest.id
    finally:
        store.dispose()
    train, val = out["train"], out["validation"]
    if not train:
        raise UserError(f"the training split of {cfg.split_name!r} is empty: nothing to fine-tune on "
                        "(import dialogues, then rerun `emplifai dataset split`)")
    rng = random.Random(cfg.seed)
    if cfg.max_train_examples and len(train) > cfg.max_train_examples:
        train = rng.sample(train, cfg.max_train_examples)
    if cfg.max_eval_examples and len(val) > cfg.max_eval_examples:
        val = rng.sample(val, cfg.max_eval_examples)
    return train, val, manifest_id


# ------------------------------------------------------------------------------------------------- model
def resolve_base(cfg: FinetuneConfig) -> Path | str:
    if cfg.base_model == EMBEDDED:
        from emplifai.llm.embedded import embedded_hf_dir

        return embedded_hf_dir()
    p = Path(cfg.base_model).expanduser()
    return p if p.exists() else cfg.base_model  # an id is passed through (a GPU box may have a hub cache)


def load_base(cfg: FinetuneConfig, base: Path | str) -> tuple[Any, Any]:
    """(model, tokenizer). Any failure becomes a UserError before training starts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(base, Path) and not (base / "config.json").is_file():
        raise UserError(f"base model {base} cannot be loaded: no config.json there (an HF model folder is needed)")
    kwargs: dict[str, Any] = {"dtype": getattr(torch, cfg.dtype)}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    try:
        tok = AutoTokenizer.from_pretrained(str(base))
        model = AutoModelForCausalLM.from_pretrained(str(base), **kwargs)
    except Exception as exc:  # OSError, ValueError, KeyError... all mean "cannot be loaded" to the user
        raise UserError(f"base model {base} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


# ------------------------------------------------------------------------------------------------- masks
def mask_stats(dataset: Any) -> dict[str, Any]:
    """Count the tokens the loss sees, per example, from the prepared dataset's labels (or completion mask)."""
    cols = dataset.column_names
    per: list[int] = []
    lengths: list[int] = []
    for row in dataset:
        if "labels" in cols:
            # labels[i] is the target of position i-1; the first position is never a target
            n = sum(1 for x in row["labels"][1:] if x != -100)
        elif "completion_mask" in cols:
            n = sum(row["completion_mask"][1:])
        else:
            n = len(row["input_ids"]) - 1
        per.append(n)
        lengths.append(len(row["input_ids"]))
    return {
        "examples": len(per),
        "target_tokens": sum(per),
        "input_tokens": sum(lengths),
        "examples_without_target": sum(1 for n in per if n == 0),
        "target_share": (sum(per) / sum(lengths)) if lengths else 0.0,
    }


def check_loss_mask(trainer: Any, tokenizer: Any) -> dict[str, Any]:
    """Refuse to train when the loss would see no target token, and prove the mask covers the dialogue."""
    stats = mask_stats(trainer.train_dataset)
    if stats["target_tokens"] == 0:
        raise UserError(
            "the loss mask is all zeros: no target token would be trained on (the prompt may fill max_length, "
            "or the completion mask was lost). Raise max_length or check the prompt format."
        )
    if stats["examples_without_target"]:
        raise UserError(f"{stats['examples_without_target']} training example(s) have no target token left after "
                        f"truncation to max_length={trainer.args.max_length}; raise max_length")
    # The collated batch is what the loss really gets: check it too, and that the unmasked text is the dialogue.
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labels = batch["labels"][0]
    kept = [int(t) for t in labels.tolist() if t != -100]
    if not kept:
        raise UserError("the collated batch has no target token: the loss mask is all zeros")
    target = tokenizer.decode(kept, skip_special_tokens=True)
    if "支援者" not in target or "状況" in target:
        raise UserError(f"the loss mask does not cover exactly the dialogue; trained text starts {target[:80]!r}")
    stats["first_target_text"] = target
    return stats


# -------------------------------------------------------------------------------------- GGUF adapter
_NO_PERMUTE = {"gemma", "gemma2", "gemma3", "qwen2", "qwen3", "phi3", "stablelm", "olmo", "olmo2"}
_PERMUTE_QK = {"llama"}  # convert_hf_to_gguf reorders llama q/k rows for its rope layout
_HF_TO_GGUF_ARCH = {"gemma3_text": "gemma3", "mistral": "llama"}


def gguf_arch(model_type: str) -> str:
    arch = _HF_TO_GGUF_ARCH.get(model_type, model_type)
    if arch not in _NO_PERMUTE | _PERMUTE_QK:
        raise UserError(
            f"no GGUF adapter export for model type {model_type!r} yet (supported: "
            f"{', '.join(sorted(_NO_PERMUTE | _PERMUTE_QK))}); set gguf_adapter: false and convert DIR/adapter "
            "with llama.cpp's convert_lora_to_gguf.py"
        )
    return arch


def _permute_rows(w: Any, n_head: int) -> Any:
    """llama.cpp's q/k row order for llama-architecture models (applied to LoRA B, whose rows are outputs)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def export_gguf_adapter(adapter_dir: Path, out_path: Path, model_config: dict[str, Any]) -> dict[str, Any]:
    """Write a PEFT LoRA adapter as a llama.cpp LoRA GGUF (what convert_lora_to_gguf.py writes).

    llama.cpp computes ``W x + scale * B (A x)`` with ``scale = alpha / rank`` per tensor. PEFT's own scale
    (alpha / r, or alpha / sqrt(r) for rsLoRA, per-module patterns) is folded into B and the file's alpha set
    to the rank, so llama.cpp's scale is exactly 1 and any PEFT scaling is reproduced.
    """
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    acfg = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if acfg.get("peft_type") != "LORA":
        raise UserError(f"{adapter_dir}: not a LoRA adapter ({acfg.get('peft_type')})")
    if acfg.get("bias", "none") != "none" or acfg.get("modules_to_save") or acfg.get("use_dora"):
        raise UserError("only plain LoRA adapters (bias none, no DoRA, no modules_to_save) export to GGUF")
    arch = gguf_arch(model_config["model_type"])
    n_layers = int(model_config["num_hidden_layers"])
    names = gguf.get_tensor_name_map(next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch), n_layers)
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    ranks = {int(acfg["r"])}
    writer_items: list[tuple[str, Any]] = []
    for key in sorted(tensors):
        if ".lora_A." not in key:
            if ".lora_B." not in key:
                raise UserError(f"{adapter_dir}: unexpected tensor {key} (only lora_A/lora_B can be exported)")
            continue
        module = key.split(".lora_A.")[0].removeprefix("base_model.model.")
        a = tensors[key].astype(np.float32)
        b = tensors[key.replace(".lora_A.", ".lora_B.")].astype(np.float32)
        short = module.rsplit(".", 1)[-1]
        r = int(acfg.get("rank_pattern", {}).get(short, acfg["r"]))
        alpha = float(acfg.get("alpha_pattern", {}).get(short, acfg["lora_alpha"]))
        scale = alpha / math.sqrt(r) if acfg.get("use_rslora") else alpha / r
        b = b * scale
        if arch in _PERMUTE_QK and short in ("q_proj", "k_proj"):
            heads = model_config["num_attention_heads"]
            if short == "k_proj":
                heads = model_config.get("num_key_value_heads") or heads
            b = _permute_rows(b, int(heads))
        base_name = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if base_name is None:
            raise UserError(f"cannot map {module} to a llama.cpp tensor name for architecture {arch}")
        writer_items.append((f"{base_name}.lora_a", a))
        writer_items.append((f"{base_name}.lora_b", b))
        ranks.add(a.shape[0])
    if not writer_items:
        raise UserError(f"{adapter_dir}: the adapter holds no LoRA tensors")
    tmp = out_path.with_suffix(".gguf.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch=arch)
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    # llama.cpp's scale is alpha / rank(tensor); B already carries PEFT's scale, so alpha = rank gives 1.0.
    if len(ranks) != 1:
        raise UserError("per-module LoRA ranks cannot be exported with a single GGUF alpha; use one rank")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(ranks.pop()))
    for name, arr in writer_items:
        writer.add_tensor(name, np.ascontiguousarray(arr))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out_path)
    return {"arch": arch, "tensors": len(writer_items), "sha256": _sha256(out_path), "gguf": dist_version("gguf")}


# ------------------------------------------------------------------------------------------------- plot
def plot_losses(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    val = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h and "step" in h]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="tab:blue")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss", color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (target tokens)")
    ax.set_title("LoRA SFT")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


# -------------------------------------------------------------------------------------------------- run
@dataclass
class FinetuneResult:
    out: Path
    adapter_dir: Path
    gguf_adapter: Path | None
    spec: str | None
    metrics: dict[str, Any]


def model_spec(cfg: FinetuneConfig, gguf_adapter: Path | None) -> str | None:
    """The LLM-layer spec of the fine-tuned model (llama.cpp with the GGUF adapter), when there is one."""
    if gguf_adapter is None:
        return None
    if cfg.base_model == EMBEDDED:
        return f"embedded+lora:{gguf_adapter}"
    if cfg.base_gguf:
        return f"gguf:{Path(cfg.base_gguf).expanduser().resolve()}+lora:{gguf_adapter}"
    return None


def _prepare_out(out: Path, cfg: FinetuneConfig) -> None:
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.yaml"
    text = config_yaml(cfg)
    if saved.is_file() and saved.read_text(encoding="utf-8") != text:
        raise UserError(f"{out} holds a run with a different config ({saved}); use another --out, or delete it")
    if not saved.is_file():
        tmp = saved.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, saved)


def _finished(out: Path, cfg: FinetuneConfig) -> FinetuneResult | None:
    """The result of a finished run in ``out`` (re-exporting a missing GGUF adapter), or None."""
    metrics_path, adapter_dir = out / "metrics.json", out / "adapter"
    if not (metrics_path.is_file() and (adapter_dir / "adapter_model.safetensors").is_file()):
        return None
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    gguf_path = out / "adapter.gguf" if cfg.gguf_adapter else None
    if gguf_path is not None and not gguf_path.is_file():
        model_cfg = json.loads((adapter_dir / "base_config.json").read_text(encoding="utf-8"))
        export_gguf_adapter(adapter_dir, gguf_path, model_cfg)
    return FinetuneResult(out, adapter_dir, gguf_path, metrics["spec"], metrics)


def _device_args(cfg: FinetuneConfig) -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available() if cfg.device == "auto" else cfg.device == "cuda"
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device: cuda was asked for, but torch sees no CUDA GPU")
    return {
        "use_cpu": not cuda,
        "bf16": cfg.dtype == "bfloat16" and cuda,
        "fp16": cfg.dtype == "float16" and cuda,
    }


def run(cfg: FinetuneConfig, out: str | os.PathLike[str], db: str | None = None,
        *, progress: bool = True) -> FinetuneResult:
    """Fine-tune; every check that can fail runs before the first optimizer step. Rerunning resumes."""
    out = Path(out).resolve()
    t_start = time.perf_counter()
    train_ex, val_ex, manifest_id = load_examples(db, cfg)  # missing split / empty train set fail here
    _prepare_out(out, cfg)
    done = _finished(out, cfg)
    if done is not None:  # same config, already trained: nothing to redo
        return done
    base = resolve_base(cfg)

    import torch
    import transformers
    from datasets import Dataset
    from peft import LoraConfig
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    transformers.set_seed(cfg.seed, deterministic=False)
    model, tok = load_base(cfg, base)
    eos = tok.eos_token or ""
    if eos != "<eos>" or getattr(tok, "chat_template", None):  # not the embedded Gemma: render with this tokenizer
        train_ex, val_ex, manifest_id = load_examples(db, cfg, eos=eos, tokenizer=tok)

    def to_ds(rows: list[Example]) -> Any:
        return Dataset.from_list([{"prompt": e.prompt, "completion": e.completion} for e in rows])

    ckpt_dir = out / "checkpoints"
    args = SFTConfig(
        output_dir=str(ckpt_dir),
        seed=cfg.seed,
        data_seed=cfg.seed,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        weight_decay=cfg.weight_decay,
        gradient_checkpointing=cfg.gradient_checkpointing,
        max_length=cfg.max_length,
        completion_only_loss=True,
        packing=False,
        logging_steps=cfg.logging_steps,
        eval_strategy="epoch" if val_ex else "no",
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to="none",
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        **_device_args(cfg),
    )
    lora = LoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules, bias="none", task_type="CAUSAL_LM",
    )
    try:
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=to_ds(train_ex), eval_dataset=to_ds(val_ex) if val_ex else None,
            processing_class=tok, peft_config=lora,
        )
    except ValueError as exc:  # e.g. target_modules matching nothing in this model
        raise UserError(f"cannot set up training: {exc}") from exc
    mask = check_loss_mask(trainer, tok)
    base_fingerprint = _fingerprint(trainer.model, lora=False)
    lora_before = _fingerprint(trainer.model, lora=True)

    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    eval_before = None
    if last is None and cfg.eval_before_training and val_ex:
        eval_before = trainer.evaluate()["eval_loss"]
        trainer.state.log_history.append({"step": 0, "eval_loss": eval_before, "epoch": 0.0})
    t_train = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=last)
    train_seconds = time.perf_counter() - t_train
    if _fingerprint(trainer.model, lora=False) != base_fingerprint:
        raise RuntimeError("the base weights changed during LoRA training (bug)")
    lora_after = _fingerprint(trainer.model, lora=True)

    adapter_dir = out / "adapter"
    tmp = out / "adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.model.save_pretrained(str(tmp))
    # the base model's config, so the GGUF adapter can be re-exported without loading the model
    (tmp / "base_config.json").write_text(json.dumps(trainer.model.config.to_dict(), default=str), encoding="utf-8")
    shutil.rmtree(adapter_dir, ignore_errors=True)
    os.replace(tmp, adapter_dir)

    gguf_path = None
    gguf_info = None
    if cfg.gguf_adapter:
        gguf_path = out / "adapter.gguf"
        gguf_info = export_gguf_adapter(adapter_dir, gguf_path, trainer.model.config.to_dict())

    history = list(trainer.state.log_history)
    if eval_before is not None and not any(h.get("step") == 0 and "eval_loss" in h for h in history):
        history.insert(0, {"step": 0, "eval_loss": eval_before, "epoch": 0.0})
    plot_losses(history, out / "loss.png")
    steps_run = trainer.state.global_step
    epochs_done = float(trainer.state.epoch or 0.0)
    tokens_seen = mask["input_tokens"] * epochs_done
    metrics = {
        "finetune_version": FINETUNE_VERSION,
        "spec": model_spec(cfg, gguf_path),
        "base_model": str(base),
        "base_build": _build_info(base),
        "config": cfg.model_dump(mode="json"),
        "split": {"name": cfg.split_name, "manifest_id": manifest_id, "train_examples": len(train_ex),
                  "validation_examples": len(val_ex)},
        "prompt_version": _promptdist_version(),
        "loss_mask": mask,
        "eval_loss_before": eval_before,
        "eval_losses": [{"epoch": h.get("epoch"), "step": h["step"], "eval_loss": h["eval_loss"]}
                        for h in history if "eval_loss" in h],
        "train_loss": train_out.training_loss,
        "steps": steps_run,
        "epochs": epochs_done,
        "resumed_from": last,
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - t_start,
        "train_tokens_per_second": tokens_seen / train_seconds if train_seconds > 0 else None,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "adapter_sha256": _sha256(adapter_dir / "adapter_model.safetensors"),
        # sha256 of the frozen weights (checked unchanged after training) and of the LoRA weights before/after
        # this process trained (equal before/after when a resumed run had nothing left to do)
        "fingerprints": {"base": base_fingerprint, "lora_before": lora_before, "lora_after": lora_after},
        "gguf_adapter": gguf_info,
        "versions": {k: dist_version(k) for k in ("torch", "transformers", "peft", "trl", "gguf", "emplifai")},
        "log_history": history,
    }
    tmp_m = out / "metrics.json.tmp"
    tmp_m.write_text(json.dumps(metrics, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp_m, out / "metrics.json")
    return FinetuneResult(out, adapter_dir, gguf_path, metrics["spec"], metrics)


# ----------------------------------------------------------------------------------------------- helpers
def _fingerprint(model: Any, *, lora: bool) -> str:
    """Hash of the frozen (lora=False) or trainable (lora=True) weights, under names that are the same with or
    without the PEFT wrapper, so the base model's hash can be checked against a freshly loaded copy."""
    h = hashlib.sha256()
    named = []
    for name, p in model.named_parameters():
        if ("lora_" in name) == lora:
            named.append((name.removeprefix("base_model.model.").replace(".base_layer.", "."), p))
    for name, p in sorted(named, key=lambda x: x[0]):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def _build_info(base: Path | str) -> dict[str, Any] | None:
    from emplifai.llm.embedded import build_info

    return build_info(Path(base)) if isinstance(base, Path) else None


def _promptdist_version() -> str:
    from emplifai.prompts.generation import PROMPT_VERSION

    return PROMPT_VERSION


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


"""The training run: LoRA SFT with TRL + PEFT on the examples of :mod:`.data`, and the artefacts it leaves.

The same code path fine-tunes the embedded Gemma 3 270M on 2 CPU cores (``configs/finetune-cpu.yaml``, the
defaults of :class:`~.config.FinetuneConfig`) and any Hugging Face causal LM on a GPU
(``configs/finetune-gpu.yaml``). Every check that can fail runs before the first optimizer step.

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
import os
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emplifai.errors import UserError
from emplifai.formatting import to_json
from emplifai.llm import embedded
from emplifai.prompts import generation
from emplifai.provenance import dist_version, file_sha256

from .config import EMBEDDED, FinetuneConfig, config_yaml
from .data import GEMMA_EOS, Example, check_loss_mask, load_examples
from .gguf import export_gguf_adapter

if TYPE_CHECKING:
    from datasets import Dataset
    from peft import LoraConfig
    from torch.nn import Module
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from trl import SFTConfig, SFTTrainer

FINETUNE_VERSION = "finetune-v1"


@dataclass
class FinetuneResult:
    out: Path
    adapter_dir: Path
    gguf_adapter: Path | None
    spec: str | None
    metrics: dict[str, Any]


# ------------------------------------------------------------------------------------------------- model
def resolve_base(cfg: FinetuneConfig) -> Path | str:
    if cfg.base_model == EMBEDDED:
        return embedded.embedded_hf_dir()
    p = Path(cfg.base_model).expanduser()
    return p if p.exists() else cfg.base_model  # an id is passed through (a GPU box may have a hub cache)


def load_base(cfg: FinetuneConfig, base: Path | str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
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


def weights_fingerprint(model: Module, *, lora: bool) -> str:
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


def model_spec(cfg: FinetuneConfig, gguf_adapter: Path | None) -> str | None:
    """The LLM-layer spec of the fine-tuned model (llama.cpp with the GGUF adapter), when there is one."""
    if gguf_adapter is None:
        return None
    if cfg.base_model == EMBEDDED:
        return f"embedded+lora:{gguf_adapter}"
    if cfg.base_gguf:
        return f"gguf:{Path(cfg.base_gguf).expanduser().resolve()}+lora:{gguf_adapter}"
    return None


# --------------------------------------------------------------------------------------------------- run
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
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTTrainer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    transformers.set_seed(cfg.seed, deterministic=False)
    model, tok = load_base(cfg, base)
    eos = tok.eos_token or ""
    if eos != GEMMA_EOS or getattr(tok, "chat_template", None):  # not the embedded Gemma: render with this tokenizer
        train_ex, val_ex, manifest_id = load_examples(db, cfg, eos=eos, tokenizer=tok)

    ckpt_dir = out / "checkpoints"
    args = _sft_config(cfg, ckpt_dir, bool(val_ex), progress)
    lora = _lora_config(cfg)
    try:
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=_dataset(train_ex), eval_dataset=_dataset(val_ex) if val_ex else None,
            processing_class=tok, peft_config=lora,
        )
    except ValueError as exc:  # e.g. target_modules matching nothing in this model
        raise UserError(f"cannot set up training: {exc}") from exc
    mask = check_loss_mask(trainer, tok)
    base_fingerprint = weights_fingerprint(trainer.model, lora=False)
    lora_before = weights_fingerprint(trainer.model, lora=True)

    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    eval_before = None
    if last is None and cfg.eval_before_training and val_ex:
        eval_before = trainer.evaluate()["eval_loss"]
        trainer.state.log_history.append({"step": 0, "eval_loss": eval_before, "epoch": 0.0})
    t_train = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=last)
    train_seconds = time.perf_counter() - t_train
    if weights_fingerprint(trainer.model, lora=False) != base_fingerprint:
        raise RuntimeError("the base weights changed during LoRA training (bug)")
    lora_after = weights_fingerprint(trainer.model, lora=True)

    adapter_dir = _save_adapter(trainer, out)
    gguf_path = None
    gguf_info = None
    if cfg.gguf_adapter:
        gguf_path = out / "adapter.gguf"
        gguf_info = export_gguf_adapter(adapter_dir, gguf_path, trainer.model.config.to_dict())

    history = list(trainer.state.log_history)
    if eval_before is not None and not any(h.get("step") == 0 and "eval_loss" in h for h in history):
        history.insert(0, {"step": 0, "eval_loss": eval_before, "epoch": 0.0})
    plot_losses(history, out / "loss.png")
    epochs_done = float(trainer.state.epoch or 0.0)
    tokens_seen = mask["input_tokens"] * epochs_done
    metrics = {
        "finetune_version": FINETUNE_VERSION,
        "spec": model_spec(cfg, gguf_path),
        "base_model": str(base),
        "base_build": embedded.build_info(base) if isinstance(base, Path) else None,
        "config": cfg.model_dump(mode="json"),
        "split": {"name": cfg.split_name, "manifest_id": manifest_id, "train_examples": len(train_ex),
                  "validation_examples": len(val_ex)},
        "prompt_version": generation.PROMPT_VERSION,
        "loss_mask": mask,
        "eval_loss_before": eval_before,
        "eval_losses": [{"epoch": h.get("epoch"), "step": h["step"], "eval_loss": h["eval_loss"]}
                        for h in history if "eval_loss" in h],
        "train_loss": train_out.training_loss,
        "steps": trainer.state.global_step,
        "epochs": epochs_done,
        "resumed_from": last,
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - t_start,
        "train_tokens_per_second": tokens_seen / train_seconds if train_seconds > 0 else None,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "adapter_sha256": file_sha256(adapter_dir / "adapter_model.safetensors"),
        # sha256 of the frozen weights (checked unchanged after training) and of the LoRA weights before/after
        # this process trained (equal before/after when a resumed run had nothing left to do)
        "fingerprints": {"base": base_fingerprint, "lora_before": lora_before, "lora_after": lora_after},
        "gguf_adapter": gguf_info,
        "versions": {k: dist_version(k) for k in ("torch", "transformers", "peft", "trl", "gguf", "emplifai")},
        "log_history": history,
    }
    tmp_m = out / "metrics.json.tmp"
    tmp_m.write_text(to_json(metrics), encoding="utf-8")
    os.replace(tmp_m, out / "metrics.json")
    return FinetuneResult(out, adapter_dir, gguf_path, metrics["spec"], metrics)


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


# ----------------------------------------------------------------------------------------------- helpers
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


def _dataset(rows: list[Example]) -> Dataset:
    from datasets import Dataset

    return Dataset.from_list([{"prompt": e.prompt, "completion": e.completion} for e in rows])


def _sft_config(cfg: FinetuneConfig, ckpt_dir: Path, has_validation: bool, progress: bool) -> SFTConfig:
    from trl import SFTConfig

    return SFTConfig(
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
        eval_strategy="epoch" if has_validation else "no",
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to="none",
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        **_device_args(cfg),
    )


def _lora_config(cfg: FinetuneConfig) -> LoraConfig:
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules, bias="none", task_type="CAUSAL_LM",
    )


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


def _save_adapter(trainer: SFTTrainer, out: Path) -> Path:
    """Write DIR/adapter atomically, with the base model's config, so the GGUF adapter can be re-exported
    without loading the model."""
    adapter_dir = out / "adapter"
    tmp = out / "adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.model.save_pretrained(str(tmp))
    (tmp / "base_config.json").write_text(json.dumps(trainer.model.config.to_dict(), default=str), encoding="utf-8")
    shutil.rmtree(adapter_dir, ignore_errors=True)
    os.replace(tmp, adapter_dir)
    return adapter_dir

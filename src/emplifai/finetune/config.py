"""Every setting of a fine-tuning run, read from YAML or TOML with ``key=value`` overrides.

The defaults are the CPU config (``configs/finetune-cpu.yaml``); ``configs/finetune-gpu.yaml`` is the same
schema. Unknown keys are refused by name, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emplifai.errors import UserError

#: the base_model value that means the embedded Gemma 3 270M
EMBEDDED = "embedded"
#: chat: Gemma chat turns, as LLM.chat() sends them; plain: raw text, as complete()
PromptFormat = Literal["chat", "plain"]
Lang = Literal["ja", "en"]


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
    prompt_format: PromptFormat = Field(
        "chat", description="chat: Gemma chat turns, as LLM.chat() sends them; plain: raw text, as complete()"
    )
    lang: Lang = "ja"
    split_name: str = Field("default", description="split manifest to read the train/validation splits from")
    train_sources: list[Literal["crowd", "synthetic", "sample", "model"]] | None = Field(
        None, description="train only on dialogues of these sources (None: all); synthetic ones only once approved "
                          "in review (SynthEmpathy's experiment: [crowd] vs [crowd, synthetic])")
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
    data: dict[str, Any] = {} if path is None else _read_file(Path(path))
    source = "defaults" if path is None else str(Path(path))
    from_cli: set[str] = set()
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
    """The resolved config as written to ``DIR/config.yaml`` (a rerun compares against it)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), allow_unicode=True, sort_keys=False)


def _read_file(p: Path) -> dict[str, Any]:
    if not p.is_file():
        raise UserError(f"config file not found: {p}")
    text = p.read_text(encoding="utf-8")
    toml = p.suffix.lower() == ".toml"
    try:
        data = tomllib.loads(text) if toml else (yaml.safe_load(text) or {})
    except (yaml.YAMLError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise UserError(f"{p}: not valid {'TOML' if toml else 'YAML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{p}: the config must be a mapping of settings")
    return data

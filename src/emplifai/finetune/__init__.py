"""Fine-tuning: the paper's SFT experiment (section 5) — LoRA on the training split, then before/after.

    from emplifai import finetune
    cfg = finetune.load_config("configs/finetune-cpu.yaml", ["epochs=2"])
    result = finetune.run(cfg, "runs/ft", db)     # result.spec == "embedded+lora:runs/ft/adapter.gguf"

* ``config``  — :class:`FinetuneConfig`, every setting of a run (YAML/TOML + ``key=value`` overrides);
* ``data``    — the SFT examples from a stored split (prompt = the generation instruction, target = the
  dialogue) and the check that the loss mask is not empty;
* ``train``   — the TRL + PEFT training loop and the output folder (adapter, metrics, loss curve);
* ``gguf``    — the adapter converted for llama.cpp, so the tuned model is just another model spec;
* ``compare`` — the before/after table for two model specs.

It owns no store table: training reads the train and validation records of a split manifest and writes a
model artefact folder; the comparison stores what it produces through the evaluate and predict stages.

The cut: fine-tuning is the only stage that changes weights, and it hands the rest of the pipeline nothing but
a model spec string (``embedded+lora:…``). Every stage that generates, judges or predicts therefore runs a tuned
model exactly like any other, through :mod:`emplifai.llm`, and the heavy training stack (torch, transformers,
peft, trl, gguf) is imported only inside this package's functions.
"""

from .config import EMBEDDED, FinetuneConfig, LoraSettings, config_yaml, load_config
from .data import Example, check_loss_mask, completion_text, load_examples, mask_stats, prompt_text
from .gguf import export_gguf_adapter, gguf_arch, permute_qk_rows
from .train import FINETUNE_VERSION, FinetuneResult, load_base, model_spec, resolve_base, run, weights_fingerprint

__all__ = [
    "EMBEDDED",
    "FINETUNE_VERSION",
    "Example",
    "FinetuneConfig",
    "FinetuneResult",
    "LoraSettings",
    "check_loss_mask",
    "completion_text",
    "config_yaml",
    "export_gguf_adapter",
    "gguf_arch",
    "load_base",
    "load_config",
    "load_examples",
    "mask_stats",
    "model_spec",
    "permute_qk_rows",
    "prompt_text",
    "resolve_base",
    "run",
    "weights_fingerprint",
]

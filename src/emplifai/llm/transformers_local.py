"""``hf:DIR`` — a local transformers causal LM on CPU (e.g. the dequantised Gemma folder made for fine-tuning).

Modest by design: float32, batch size 1, our own decode loop (shared with the llama.cpp backend, so seeds
and greedy decoding behave the same), and ``score()`` reusing the prompt's ``past_key_values`` for every
candidate (a deep copy per candidate, which works for every cache type including sliding-window ones).
Nothing is downloaded: ``local_files_only=True``.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emplifai.provenance import dist_version, file_sha256, text_digest

from . import decoding
from .base import (
    LLM,
    BackendUnavailable,
    Completion,
    GenParams,
    LLMError,
    MessagesLike,
    to_messages,
)
from .chat_template import END_OF_TURN, render_gemma

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja")


class TransformersLLM(LLM):
    def __init__(
        self, model_dir: str | os.PathLike[str], *, n_threads: int | None = None, chat_format: str | None = None
    ) -> None:
        try:
            import torch
            import transformers
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise BackendUnavailable(
                "hf: models need torch and transformers: pip install 'emplifai[finetune]'"
            ) from exc
        self._torch = torch
        self.model_dir = Path(model_dir).resolve()
        if not (self.model_dir / "config.json").is_file():
            raise BackendUnavailable(f"not a transformers model folder (no config.json): {self.model_dir}")
        if n_threads:
            torch.set_num_threads(n_threads)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(
                self.model_dir, local_files_only=True, dtype=torch.float32
            )
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f"transformers could not load {self.model_dir}: {exc}") from exc
        self.model.eval()
        self.spec = f"hf:{self.model_dir}"
        model_type = getattr(self.model.config, "model_type", "")
        if chat_format is None:
            chat_format = (
                "template" if self.tokenizer.chat_template else ("gemma" if model_type.startswith("gemma") else "none")
            )
        self.chat_format = chat_format
        self.instruction_tuned = bool(self.tokenizer.chat_template)  # base models ship no chat template
        self._eog = self._end_tokens()
        self._sha: str | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------- public API
    def signature(self) -> dict[str, Any]:
        if self._sha is None:  # one digest over every file that shapes outputs (weights, config, tokenizer)
            self._sha = text_digest("".join(
                f"{f.name}:{file_sha256(f)}\n"
                for f in sorted(self.model_dir.iterdir()) if f.is_file() and f.name.endswith(_WEIGHT_SUFFIXES)
            ))
        return {
            "backend": "transformers",
            "model": self.model_dir.name,
            "model_sha256": self._sha,
            "adapter": None,
            "n_ctx": self._n_ctx(),
            "chat_format": self.chat_format,
            "versions": {
                "transformers": dist_version("transformers"),
                "torch": dist_version("torch"),
                "decode_loop": decoding.LOOP_VERSION,
            },
        }

    def complete(self, prompt: str, params: GenParams | None = None) -> Completion:
        with self._lock:
            return self._generate(self.tokenize(prompt), params or GenParams())

    def chat(self, messages: MessagesLike, params: GenParams | None = None) -> Completion:
        msgs = to_messages(messages)
        if self.chat_format == "template":
            text = self.tokenizer.apply_chat_template(
                [m.model_dump() for m in msgs], add_generation_prompt=True, tokenize=False
            )
            tokens = self._ensure_start(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        elif self.chat_format == "gemma":
            tokens = self.tokenize(render_gemma(msgs))
        else:
            raise LLMError(f"{self.model_dir.name} has no chat template; use complete()")
        with self._lock:
            return self._generate(tokens, params or GenParams())

    def render_chat(self, messages: MessagesLike) -> str | None:
        return render_gemma(to_messages(messages)) if self.chat_format == "gemma" else None

    def score(self, prompt: str, candidates: Sequence[str]) -> list[float]:
        with self._lock:
            return self._score(prompt, candidates)

    def score_reference(self, prompt: str, candidates: Sequence[str]) -> list[float]:
        """Each candidate by one independent forward pass over prompt + candidate (tests/benchmarks)."""
        with self._lock:
            out = []
            p = self.tokenize(prompt)
            for cand in candidates:
                full = self.tokenize(prompt + cand)
                k = decoding.common_prefix_len(p, full)
                total = decoding.sum_logprobs(self._forward(full)[0][k - 1 : -1], full[k:])
                if k < len(p):
                    total -= decoding.sum_logprobs(self._forward(p)[0][k - 1 : -1], p[k:])
                out.append(total)
            return out

    def tokenize(self, text: str) -> list[int]:
        return self._ensure_start(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def close(self) -> None:
        self.model = None

    # ------------------------------------------------------------------------------------- internals
    def _ensure_start(self, ids: list[int]) -> list[int]:
        # score() conditions every candidate on at least one shared token: models whose tokenizer adds no
        # BOS (GPT-2 style) get their BOS/EOS token prepended, as lm-eval-harness does.
        start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id
        if start is not None and (not ids or ids[0] != start):
            ids = [start, *ids]
        return list(ids)

    def _forward(self, ids: Sequence[int], past: Any = None, keep: int = 0) -> tuple[np.ndarray, Any]:
        """Logits (keep=0: every position; else the last ``keep``) and the updated cache."""
        torch = self._torch
        kwargs: dict[str, Any] = {"logits_to_keep": keep} if keep else {}
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([list(ids)]), past_key_values=past, use_cache=True, **kwargs)
        return out.logits[0].float().numpy(), out.past_key_values

    def _score(self, prompt: str, candidates: Sequence[str]) -> list[float]:
        if not candidates:
            return []
        p = self.tokenize(prompt)
        n = len(p)
        last, past = self._forward(p, keep=1)  # the prompt, evaluated once
        first = decoding.log_softmax(last[-1])
        scores = []
        p_logits: np.ndarray | None = None
        for cand in candidates:
            full = self.tokenize(prompt + cand)
            k = decoding.common_prefix_len(p, full)
            if k == n:
                if len(full) == n:
                    scores.append(0.0)
                    continue
                total = float(first[full[n]])
                if len(full) > n + 1:  # continue from a copy of the prompt's cache
                    logits, _ = self._forward(full[n:-1], copy.deepcopy(past))
                    total += decoding.sum_logprobs(logits, full[n + 1 :])
                scores.append(total)
            else:  # boundary merged: log P(full[k:] | full[:k]) - log P(p[k:] | p[:k])
                if p_logits is None:
                    p_logits = self._forward(p)[0]
                full_logits = self._forward(full)[0]
                scores.append(
                    decoding.sum_logprobs(full_logits[k - 1 : -1], full[k:])
                    - decoding.sum_logprobs(p_logits[k - 1 : -1], p[k:])
                )
        return scores

    def _generate(self, tokens: list[int], params: GenParams) -> Completion:
        n_ctx = self._n_ctx()
        max_new = min(params.max_tokens, n_ctx - len(tokens))
        if max_new <= 0:
            raise LLMError(f"prompt of {len(tokens)} tokens leaves no room in the model's context ({n_ctx})")
        logits, past = self._forward(tokens, keep=1)
        state = {"past": past}

        def step(token: int) -> np.ndarray:
            out, state["past"] = self._forward([token], state["past"], keep=1)
            return out[-1]

        tok = self.tokenizer
        return decoding.generate(
            logits[-1],
            step,
            detokenize=lambda ids: tok.decode(ids, skip_special_tokens=True).encode("utf-8"),
            piece=lambda i: tok.decode([i]),
            is_eog=lambda t: t in self._eog,
            params=params,
            max_new=max_new,
            prompt_tokens=len(tokens),
        )

    def _end_tokens(self) -> set[int]:
        ids: set[int] = set()
        for source in (getattr(self.model, "generation_config", None), self.model.config, self.tokenizer):
            eos = getattr(source, "eos_token_id", None)
            ids.update(eos if isinstance(eos, list | tuple | set) else [eos] if eos is not None else [])
        end_of_turn = self.tokenizer.convert_tokens_to_ids(END_OF_TURN)
        if isinstance(end_of_turn, int) and end_of_turn != self.tokenizer.unk_token_id:
            ids.add(end_of_turn)
        return ids

    def _n_ctx(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 0) or 2048)

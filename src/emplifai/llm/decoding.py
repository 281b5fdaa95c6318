"""The decoding shared by the in-process backends (llama.cpp and transformers): sampling, the decode loop
and log-probability helpers.

Both backends run their own token loop instead of the libraries' ``generate`` helpers, because that is the
only way to get (a) identical greedy/seeded sampling on both, (b) per-token log-probabilities without
llama-cpp-python's ``logits_all=True`` (which computes and copies a 262k-wide logit row for *every* prompt
token and sorts it in Python) and (c) one place that handles stop strings and end-of-generation tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from .base import Completion, GenParams, TokenLogprob

#: bump when the decode loop / sampling changes in a way that changes outputs (it is part of signature()).
LOOP_VERSION = 1


class Constraint(Protocol):
    """What the decode loop needs from a grammar (llm/grammar.py): check one token, mask all, advance."""

    def allows(self, token: int) -> bool: ...

    def mask(self, logprobs: np.ndarray) -> np.ndarray: ...

    def accept(self, token: int) -> None: ...

    def complete(self, text: str) -> bool: ...


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax in float64 (sums over 262k-entry vocabularies need the precision)."""
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def choose_token(logprobs: np.ndarray, params: GenParams, rng: np.random.Generator) -> int:
    """Greedy at temperature 0, else temperature + nucleus (top_p) sampling from a seeded numpy RNG."""
    if params.temperature == 0.0:
        return int(np.argmax(logprobs))
    scaled = logprobs / params.temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        # sorting 262k probabilities costs ~40 ms; the nucleus almost always lies in the top 2,048
        head = np.argpartition(-probs, 2047)[:2048] if probs.size > 4096 else np.arange(probs.size)
        if probs[head].sum() < params.top_p:
            head = np.arange(probs.size)
        order = head[np.argsort(-probs[head], kind="stable")]
        cum = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cum, params.top_p)) + 1]
        sub = probs[keep] / probs[keep].sum()
        return int(keep[int(np.searchsorted(np.cumsum(sub), rng.random(), side="right").clip(max=len(sub) - 1))])
    cdf = np.cumsum(probs)
    return int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right").clip(max=len(cdf) - 1))


def top_alternatives(logprobs: np.ndarray, k: int, piece: Callable[[int], str]) -> dict[str, float]:
    if k <= 0:
        return {}
    idx = np.argpartition(-logprobs, k - 1)[:k]
    idx = idx[np.argsort(-logprobs[idx], kind="stable")]
    out: dict[str, float] = {}
    for i in idx:
        out.setdefault(piece(int(i)), float(logprobs[i]))
    return out


def generate(
    first_logits: np.ndarray,
    step: Callable[[int], np.ndarray],
    *,
    detokenize: Callable[[list[int]], bytes],
    piece: Callable[[int], str],
    is_eog: Callable[[int], bool],
    params: GenParams,
    max_new: int,
    prompt_tokens: int,
    constraint: Constraint | None = None,
) -> Completion:
    """Run the decode loop. ``step(token)`` feeds one token and returns the next position's logits.

    With a ``constraint`` every chosen token is one it allows (the reported log-probabilities stay the model's
    own), and generation stops as soon as the constrained text is complete."""
    rng = np.random.default_rng(params.seed)
    logits = first_logits
    out: list[int] = []
    lps: list[TokenLogprob] = []
    text = ""
    finish = "length"
    for n in range(max_new):
        lp = log_softmax(logits)
        tok = choose_token(lp, params, rng)
        if constraint is not None:
            if not constraint.allows(tok):
                tok = choose_token(constraint.mask(lp), params, rng)
            if not is_eog(tok):
                constraint.accept(tok)
        if is_eog(tok):
            finish = "stop"
            break
        out.append(tok)
        if params.logprobs is not None:
            lps.append(
                {"token": piece(tok), "logprob": float(lp[tok]), "top": top_alternatives(lp, params.logprobs, piece)}
            )
        text = detokenize(out).decode("utf-8", errors="ignore")
        cut = _earliest_stop(text, params.stop)
        if cut is not None:
            text, finish = text[:cut], "stop"
            break
        if constraint is not None and constraint.complete(text):
            finish = "stop"
            break
        if n + 1 < max_new:
            logits = step(tok)
    if params.logprobs is not None and finish == "stop" and params.stop:
        lps = _trim_logprobs(out, lps, detokenize, len(text))
    return Completion(
        text=text,
        finish_reason=finish,
        token_logprobs=lps if params.logprobs is not None else None,
        prompt_tokens=prompt_tokens,
        completion_tokens=len(out),
    )


def _earliest_stop(text: str, stops: Sequence[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def _trim_logprobs(
    tokens: list[int], lps: list[TokenLogprob], detokenize: Callable[[list[int]], bytes], n_chars: int
) -> list[TokenLogprob]:
    """Keep log-probs only for tokens that start inside the returned (stop-truncated) text."""
    kept = []
    for i, entry in enumerate(lps):
        if len(detokenize(tokens[:i]).decode("utf-8", errors="ignore")) >= n_chars:
            break
        kept.append(entry)
    return kept


def token_logprob(logits: np.ndarray, token: int) -> float:
    return float(log_softmax(logits)[token])


def sum_logprobs(rows: np.ndarray, targets: Sequence[int]) -> float:
    """Sum of log P(targets[i] | row i) for logit rows aligned with their targets."""
    if len(targets) == 0:
        return 0.0
    lp = log_softmax(np.asarray(rows))
    return float(lp[np.arange(len(targets)), np.asarray(targets)].sum())

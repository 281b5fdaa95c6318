"""The llama.cpp backend's decode schedule: a function of the tokens alone, so the KV cache can be reused.

llama.cpp's CPU kernels round differently for different batch shapes: a position's logits move by up to ~1 logit
when the same tokens are decoded in other chunks, or with another number of logits rows asked for in the same
chunk (the last layer only computes the rows asked for). Reusing whatever an earlier call left in the cache would
therefore make numbers depend on call history. Instead every decode here follows one schedule:

* a token sequence is decoded in chunks that start at multiples of ``chunk`` (``[0, C), [C, 2C), …``, the last
  one may be short); the logits rows a call asks for are part of the call, not of the cache state;
* a chunk's keys/values depend only on its own tokens and the chunks before it (logits rows are computed after
  the last layer's attention has written them), so a cached chunk equal to the chunk a call would decode holds
  exactly the numbers a decode from scratch would compute, and is reused; the chunk holding the first position
  whose logits the call needs is always decoded again (logits are not kept);
* generated tokens are decoded one at a time and never reused by another call (a later prompt that contains
  them decodes them in its own chunks);
* ``continuations``: all candidates of a score call in one batch, one sequence per candidate sharing the prompt's
  cells (``llama_memory_seq_cp``), deduplicated and sorted, so the batch depends on the prompt and the *set* of
  candidates only. A candidate's numbers therefore depend on which other candidates share its batch (the same
  rounding effect: up to ~0.35 nat against each candidate decoded alone, see BENCHMARKS.md): always pass the
  same candidate list.

The invariant that makes this safe: at the start of every decode, sequence 0 holds exactly ``kv`` in cells
``0..len(kv)-1`` and no other sequence holds anything (``llama_memory_seq_keep(0)`` after each batch).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import decoding
from .base import LLMError

#: bump when the schedule changes in a way that changes numbers (part of LlamaCppLLM.signature())
SCHEDULE_VERSION = 1
#: tokens per decode chunk; small enough that a shared prompt header is reused almost whole, large enough that
#: the per-call overhead of llama_decode stays small (32–512 measured within noise of each other on 2 cores)
DEFAULT_CHUNK = 64

Take = Callable[[int, np.ndarray], None]


class Decoder:
    """Drives one llama.cpp context (unified KV cache, ``n_seq_max`` sequences) by the schedule above."""

    def __init__(self, lc: Any, ctx: Any, batch: Any, *, n_vocab: int, chunk: int, n_batch: int, n_seq_max: int,
                 n_ctx: int) -> None:
        if not 1 <= chunk <= n_batch:
            raise LLMError(f"decode chunk must be between 1 and n_batch={n_batch}, got {chunk}")
        self._lc, self._ctx, self._batch = lc, ctx, batch
        self._memory = lc.llama_get_memory(ctx)
        self.n_vocab, self.chunk, self.n_batch, self.n_seq_max, self.n_ctx = n_vocab, chunk, n_batch, n_seq_max, n_ctx
        self.kv: list[int] = []  # tokens of sequence 0, positions 0..len-1
        self.chunks: list[tuple[int, ...]] = []  # the schedule's chunks that produced kv's prefix
        #: tokens decoded / taken from the cache since load (benchmarks and tests read it)
        self.stats = {"decoded": 0, "reused": 0, "decode_calls": 0}

    def clear(self) -> None:
        self._lc.llama_memory_clear(self._memory, True)
        self.kv, self.chunks = [], []

    # ---------------------------------------------------------------------------------------- sequence 0
    def decode(self, tokens: Sequence[int], want: range, take: Take) -> None:
        """Make sequence 0 hold ``tokens``, handing the logits row of each absolute position in ``want`` to
        ``take`` (a view into llama.cpp's buffer: copy to keep)."""
        if len(tokens) > self.n_ctx:
            raise LLMError(f"{len(tokens)} tokens exceed n_ctx={self.n_ctx}")
        c = self.chunk
        chunks = [tuple(tokens[i : i + c]) for i in range(0, len(tokens), c)]
        limit = min(len(chunks), len(self.chunks), want.start // c if len(want) else len(chunks))
        keep = 0
        while keep < limit and self.chunks[keep] == chunks[keep]:
            keep += 1
        keep = self._truncate(keep)
        self.stats["reused"] += keep * c if keep < len(chunks) else len(tokens)
        wanted = set(want)
        for k in range(keep, len(chunks)):
            start = k * c
            entries = [(tok, start + j, 0) for j, tok in enumerate(chunks[k])]
            rows = [j for j in range(len(entries)) if start + j in wanted]
            self._run(entries, rows, lambda j, row, s=start: take(s + j, row))
            self.chunks.append(chunks[k])
            self.kv.extend(chunks[k])

    def step(self, token: int) -> np.ndarray:
        """Append one generated token to sequence 0; return (a copy of) the next position's logits."""
        if len(self.kv) >= self.n_ctx:
            raise LLMError(f"{len(self.kv) + 1} tokens exceed n_ctx={self.n_ctx}")
        out: list[np.ndarray] = []
        self._run([(token, len(self.kv), 0)], [0], lambda _j, row: out.append(row.copy()))
        self.kv.append(token)
        return out[0]

    def _truncate(self, keep_chunks: int) -> int:
        """Drop everything after the first ``keep_chunks`` chunks; return how many chunks are still cached."""
        start = keep_chunks * self.chunk
        if len(self.kv) > start or len(self.chunks) > keep_chunks:
            if not self._lc.llama_memory_seq_rm(self._memory, -1, start, -1):  # some caches cannot cut partially
                self.clear()
                return 0
            self.kv, self.chunks = self.kv[:start], self.chunks[:keep_chunks]
        return keep_chunks

    # ------------------------------------------------------------------------------------- candidates
    def continuations(self, conts: Sequence[tuple[int, ...]]) -> dict[tuple[int, ...], float]:
        """log P(cont[1:] | kv + cont[:1]) for each continuation (the first token's probability is read off the
        prompt's last row by the caller). Sequence 0 must hold the prompt; it is left unchanged.

        One sequence per distinct continuation, in sorted order, packed into as few decodes as n_batch and
        n_seq_max allow; a continuation too long for one batch is decoded on its own sequence in several."""
        n = len(self.kv)
        todo = sorted({c for c in conts if len(c) >= 2})
        out: dict[tuple[int, ...], float] = {c: 0.0 for c in conts if len(c) < 2}
        if n + max((len(c) for c in todo), default=0) > self.n_ctx:
            raise LLMError(f"prompt + candidate exceed n_ctx={self.n_ctx}")
        groups: list[list[tuple[int, ...]]] = []
        size = 0
        for cont in todo:
            if not groups or len(groups[-1]) >= self.n_seq_max - 1 or size + len(cont) - 1 > self.n_batch:
                groups.append([])
                size = 0
            groups[-1].append(cont)
            size += len(cont) - 1
        try:
            for group in groups:
                out.update(self._group(group, n))
        finally:
            self._lc.llama_memory_seq_keep(self._memory, 0)
        return out

    def _group(self, group: list[tuple[int, ...]], n: int) -> dict[tuple[int, ...], float]:
        entries: list[tuple[int, int, int]] = []
        owner: list[tuple[tuple[int, ...], int]] = []  # (continuation, index of the token this row predicts)
        for s, cont in enumerate(group, start=1):
            self._lc.llama_memory_seq_cp(self._memory, 0, s, 0, n)  # shares the prompt's cells, copies nothing
            for i, tok in enumerate(cont[:-1]):
                entries.append((tok, n + i, s))
                owner.append((cont, i + 1))
        totals = dict.fromkeys(group, 0.0)

        def take(j: int, row: np.ndarray) -> None:
            cont, i = owner[j]
            totals[cont] += float(decoding.log_softmax(row)[cont[i]])

        for b in range(0, len(entries), self.n_batch):  # one batch unless a continuation is longer than n_batch
            part = entries[b : b + self.n_batch]
            self._run(part, list(range(len(part))), lambda j, row, b=b: take(b + j, row))
        for s in range(1, len(group) + 1):
            self._lc.llama_memory_seq_rm(self._memory, s, -1, -1)
        return totals

    # -------------------------------------------------------------------------------------------- decode
    def _run(self, entries: Sequence[tuple[int, int, int]], rows: Sequence[int], take: Take) -> None:
        """One llama_decode of (token, position, sequence) entries, logits for the batch indices in ``rows``."""
        lc, batch = self._lc, self._batch
        wanted = set(rows)
        batch.n_tokens = len(entries)
        for j, (tok, pos, seq) in enumerate(entries):
            batch.token[j] = tok
            batch.pos[j] = pos
            batch.n_seq_id[j] = 1
            batch.seq_id[j][0] = seq
            batch.logits[j] = j in wanted
        rc = lc.llama_decode(self._ctx, batch)
        self.stats["decode_calls"] += 1
        if rc != 0:
            self.clear()
            raise LLMError(f"llama_decode failed with code {rc}")
        self.stats["decoded"] += len(entries)
        for j in rows:
            ptr = lc.llama_get_logits_ith(self._ctx, j)
            take(j, np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,)))

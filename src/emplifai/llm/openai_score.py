"""``score`` on OpenAI-compatible servers, by whichever means the server has (probed once per backend).

The quantity is the one :meth:`emplifai.llm.base.LLM.score` defines: log P(prompt + candidate) - log P(prompt)
under each string's canonical tokenisation, i.e. the candidate's token log-probabilities when the prompt's
tokens are a prefix of the joint ones.

* ``echo`` (vLLM, llama-cpp-python's ``llama_cpp.server``): ``/v1/completions`` with ``echo=True, logprobs=1,
  max_tokens=1`` returns the log-probability of every prompt token. The prompt and each prompt + candidate
  are independent requests, sent in parallel, so a batching server evaluates them together.
* ``llama.cpp`` (llama.cpp's own ``llama-server``, which ignores ``echo``): teacher forcing through its
  native API. ``/tokenize`` gives the canonical tokens (BOS included, like the in-process backend), and
  ``/completion`` with the prefix as token ids, ``n_predict=1``, ``n_probs=1`` and a logit bias that makes
  the target token the greedy choice reports that token's probability *from the raw logits*: the server
  computes ``n_probs`` before any sampler, the bias included (``populate_token_probs`` in
  tools/server/server-context.cpp). One request per (prefix, token); a prefix shared by several candidates
  is asked once. All requests of one item go to one slot (``id_slot``; an item takes a free slot and gives it
  back when done): a slot's prompt cache then evaluates the item's prompt once, where spreading its requests
  over 8 slots made each slot evaluate the whole prompt (8x the work; measured 38 s instead of ~5 s for a cold
  643-token prompt). An item keeps ``PIPELINE`` requests on its slot, so when one finishes the next is already
  queued there and joins the server's very next batch: with one request at a time, the next arrived while the
  following batch was already running, and each slot took part in only every other batch (4.0 of 8 slots busy
  per decode, measured with llama-server's ``--metrics``). Items run in parallel on different slots, which the
  server batches together; ``concurrency`` counts items, i.e. busy slots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .base import LLMError

Body = dict[str, Any]
#: ``post(path_or_url, body) -> JSON`` (a GET when body is None): the backend's retrying transport, bounded by
#: its request semaphore
Post = Callable[[str, Body | None], Awaitable[Body]]

ECHO = "echo"
NATIVE = "llama.cpp"
#: added to the target token's logit so greedy sampling picks it; reported probabilities ignore the bias
FORCE_BIAS = 1.0e4
PROBE_TEXT = "患者「手術が怖いです。」\n感情："
#: requests an item keeps in flight on its llama-server slot: one running, the next queued behind it
PIPELINE = 2


class Scorer:
    """Scores items against one server; ``method`` is ECHO or NATIVE (see :func:`probe`)."""

    def __init__(self, method: str, *, model: str, base_url: str, extra_body: Body) -> None:
        self.method = method
        self.model = model
        self.base_url = base_url
        self.root = base_url.removesuffix("/v1")  # llama-server's native endpoints live at the root
        self.extra_body = extra_body
        self.slots = 1  # llama-server's slot count (from /props), for pinning an item to one slot
        # slots held by items being scored; no lock: two batches racing on different threads can at worst put two
        # items on one slot, where the second queues
        self._busy: set[int] = set()
        self._next_slot = 0

    @property
    def requests_per_item(self) -> int | None:
        """Requests one item may have in flight (NATIVE: its pipeline on its slot); None: the item's requests
        share the batch's pool, as the echo path's independent requests do."""
        return PIPELINE if self.method == NATIVE else None

    async def score(self, post: Post, prompt: str, candidates: Sequence[str]) -> list[float]:
        if not candidates:
            return []
        if not prompt:
            raise LLMError(f"score() needs a non-empty prompt on {self.base_url} (the first token has no "
                           "log-probability)")
        if self.method == ECHO:
            return await self._echo_score(post, prompt, candidates)
        return await self._native_score(post, prompt, candidates)

    # ------------------------------------------------------------------------------------------- echo
    async def echo_tokens(self, post: Post, text: str) -> list[tuple[str, float | None]]:
        body = {"model": self.model, "prompt": text, "max_tokens": 1, "temperature": 0.0, "echo": True,
                "logprobs": 1} | self.extra_body
        data = await post("/completions", body)
        try:
            lp = data["choices"][0]["logprobs"]
            pairs = list(zip(lp["tokens"], lp["token_logprobs"], strict=True))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise LLMError(
                f"server {self.base_url} cannot score by echo: /v1/completions with echo=True and logprobs did "
                "not return the prompt's token log-probabilities", raw=str(data)[:2000],
            ) from exc
        generated = (data.get("usage") or {}).get("completion_tokens", 1)
        return pairs[: len(pairs) - generated] if generated else pairs

    async def _echo_score(self, post: Post, prompt: str, candidates: Sequence[str]) -> list[float]:
        base, *fulls = await _all([self.echo_tokens(post, t) for t in [prompt, *(prompt + c for c in candidates)]])
        out = []
        for full in fulls:
            k = 0
            while k < min(len(base), len(full)) and base[k][0] == full[k][0]:
                k += 1
            out.append(self._sum(full[k:]) - self._sum(base[k:]))
        return out

    def _sum(self, pairs: Sequence[tuple[str, float | None]]) -> float:
        total = 0.0
        for token, lp in pairs:
            if lp is None:
                raise LLMError(f"server {self.base_url} returned no log-probability for token {token!r}")
            total += float(lp)
        return total

    # ---------------------------------------------------------------------------------- llama.cpp native
    async def tokenize(self, post: Post, text: str) -> list[int]:
        data = await post(f"{self.root}/tokenize", {"content": text, "add_special": True})
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise LLMError(f"{self.root}/tokenize did not return token ids", raw=str(data)[:2000])
        return tokens

    async def forced_logprob(self, post: Post, prefix: Sequence[int], target: int, slot: int = -1, *,
                             cache_prompt: bool = True) -> float:
        """log P(target | prefix) from the raw logits, the target forced as the greedy choice.
        ``cache_prompt=False`` evaluates the prefix from scratch in one batch, a schedule that can be reproduced
        in process (the test that checks these are the model's own numbers uses it)."""
        body = {"prompt": list(prefix), "n_predict": 1, "n_probs": 1, "temperature": 0.0,
                "cache_prompt": cache_prompt, "logit_bias": [[target, FORCE_BIAS]], "id_slot": slot}
        data = await post(f"{self.root}/completion", body)
        try:
            step = data["completion_probabilities"][0]
            token, logprob = step["id"], float(step["logprob"])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise LLMError(f"{self.root}/completion with n_probs did not return the token's log-probability",
                           raw=str(data)[:2000]) from exc
        if token != target:
            raise LLMError(f"{self.root}/completion did not follow the forced token {target} (got {token})",
                           raw=str(data)[:2000])
        return logprob

    async def _native_score(self, post: Post, prompt: str, candidates: Sequence[str]) -> list[float]:
        base, *fulls = await _all([self.tokenize(post, t) for t in [prompt, *(prompt + c for c in candidates)]])
        asked: set[tuple[int, ...]] = set()

        def lp(seq: list[int], j: int) -> tuple[int, ...]:
            key = tuple(seq[: j + 1])  # log P(seq[j] | seq[:j]) depends on these tokens only
            asked.add(key)
            return key

        plan = []
        for full in fulls:
            k = _common_prefix(base, full)
            if k == 0:
                raise LLMError(f"{self.root}/tokenize gave the prompt and prompt + candidate no common first "
                               "token (no BOS?): the first token has no log-probability")
            plan.append(([lp(full, j) for j in range(k, len(full))], [lp(base, j) for j in range(k, len(base))]))
        slot = self._take_slot()
        try:
            value = await self._pipelined(post, sorted(asked), slot)  # sorted: neighbours share their prefix
        finally:
            self._busy.discard(slot)
        return [sum(value[key] for key in plus) - sum(value[key] for key in minus) for plus, minus in plan]

    def _take_slot(self) -> int:
        """The lowest free slot; with more items in flight than slots, the next one in turn (it queues there)."""
        free = [i for i in range(self.slots) if i not in self._busy]
        if free:
            slot = free[0]
        else:
            slot, self._next_slot = self._next_slot % self.slots, self._next_slot + 1
        self._busy.add(slot)
        return slot

    async def _pipelined(self, post: Post, keys: Sequence[tuple[int, ...]], slot: int) -> dict[tuple[int, ...], float]:
        """Every key's forced log-probability, at most PIPELINE requests in flight, sent in the keys' order."""
        gate = asyncio.Semaphore(PIPELINE)  # FIFO: requests reach the slot in sorted order

        async def one(key: tuple[int, ...]) -> float:
            async with gate:
                return await self.forced_logprob(post, key[:-1], key[-1], slot)

        return dict(zip(keys, await _all([one(k) for k in keys]), strict=True))


async def probe(post: Post, *, model: str, base_url: str, extra_body: Body) -> Scorer:
    """Find how this server can score, trying echo first (vLLM's way) and then llama.cpp's native API; one
    clear LLMError naming both reasons when neither works."""
    problems = []
    for method in (ECHO, NATIVE):
        scorer = Scorer(method, model=model, base_url=base_url, extra_body=extra_body)
        try:
            if method == ECHO:
                pairs = await scorer.echo_tokens(post, PROBE_TEXT)
                if len(pairs) < 2 or any(lp is None for _, lp in pairs[1:]):
                    raise LLMError(f"echo returned {len(pairs)} prompt tokens without log-probabilities")
            else:
                tokens = await scorer.tokenize(post, PROBE_TEXT)
                if len(tokens) < 2:
                    raise LLMError(f"/tokenize returned {len(tokens)} tokens for {PROBE_TEXT!r}")
                await scorer.forced_logprob(post, tokens[:-1], tokens[-1])
                props = await post(f"{scorer.root}/props", None)
                scorer.slots = max(1, int(props.get("total_slots") or 1))
        except LLMError as exc:
            problems.append(f"{method}: {exc}")
            continue
        return scorer
    raise LLMError(
        f"server {base_url} cannot score candidates (score mode): it neither echoes the prompt's token "
        "log-probabilities on /v1/completions (vLLM and llama_cpp.server do) nor offers llama.cpp's /tokenize and "
        "/completion with n_probs (llama-server does). Use generate mode, or another server. Details: "
        + " | ".join(problems)
    )


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k


async def _all(coros: Sequence[Awaitable[Any]]) -> list[Any]:
    """Run together; the first error is raised after every request has finished (none left dangling)."""
    results = await asyncio.gather(*coros, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results

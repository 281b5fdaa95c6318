"""The synthesis run: plan the deficit, brainstorm → rewrite → dialogue, filter, store.

Every candidate is a row of ``synth_candidates`` from the moment the model proposes it. Stage outputs are written
as each model call finishes (``batch_chat``'s progress callback), so an interrupted run resumes on rerun: open
candidates continue from their last finished stage and finished ones are never redone. Items that pass become
core ``Situation``/``Dialogue`` rows (source="synthetic", status "pending") with their provenance in ``meta``;
the others stay in the candidate table with every filter result and the reason.

Resume key: model spec + seed + prompt version. A rerun with the same key continues the same candidates; a
different model or seed starts its own.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from emplifai import taxonomy
from emplifai.llm.base import LLM, Completion, GenParams, LLMFailure
from emplifai.predict import prompt as predictor
from emplifai.prompts.generation import STOP, format_dialogue
from emplifai.records import Kind, Source, Status
from emplifai.store.models import Dialogue, Situation, utcnow
from emplifai.store.repo import LIVE, iter_records
from emplifai.store.synth import State, SynthCandidate, SynthRun

from . import filters as F
from . import stages as S
from .checks import emotion_agreement, safety_prompts, safety_verdict
from .config import RunReport, SynthConfig, prompt_style, run_key
from .targeting import EmotionPlan, plan

if TYPE_CHECKING:
    from emplifai.store.db import Store

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class Synthesizer:
    """One ``emplifai synth`` invocation. ``check_llm`` runs the optional model filters (default: ``llm``)."""

    def __init__(self, store: Store, llm: LLM, cfg: SynthConfig, *, model: str, check_llm: LLM | None = None,
                 check_model: str | None = None, progress: Progress | None = None):
        self.store, self.llm, self.cfg, self.model = store, llm, cfg, model
        self.check_llm, self.check_model = check_llm or llm, check_model or model
        self.progress = progress
        self.emotions = taxonomy.resolve(cfg.emotions)
        self.style = prompt_style(llm, cfg)
        self.key = run_key(model, cfg, self.style)
        self._lock = threading.Lock()
        self._signature: dict[str, Any] | None = None

    @property
    def completion(self) -> bool:
        """Few-shot documents through ``complete`` (base models) instead of chat instructions."""
        return self.style == "completion"

    # ------------------------------------------------------------------------------------------ planning
    def plan(self, limit: int | None = None) -> list[EmotionPlan]:
        with self.store.transaction() as s:
            open_d, busy = self._open_work(s)
            return plan(s, emotions=self.emotions, target=self.cfg.target, per_situation=self.cfg.per_situation,
                        fill_pairs=self.cfg.fill_pairs, open_dialogues=open_d, busy_situations=busy,
                        limit=limit if limit is not None else self.cfg.limit)

    def _open_work(self, s: Any) -> tuple[dict[str, int], set[str]]:
        """Dialogues already promised by open candidates, per emotion; core situations with open top-ups."""
        open_d: dict[str, int] = defaultdict(int)
        busy: set[str] = set()
        rows = s.scalars(select(SynthCandidate).where(
            SynthCandidate.key == self.key, SynthCandidate.state.in_([State.SCENARIO, State.OPEN]))).all()
        parents = self._parents(s, [r.parent_id for r in rows if r.parent_id])
        for c in rows:
            if c.kind == Kind.SITUATION:
                open_d[c.emotion] += c.want
            else:
                open_d[c.emotion] += 1
                sid = c.situation_id or (parents[c.parent_id].core_id if c.parent_id in parents else None)
                if sid:
                    busy.add(sid)
        return dict(open_d), busy

    @staticmethod
    def _parents(s: Any, ids: Sequence[str]) -> dict[str, SynthCandidate]:
        if not ids:
            return {}
        return {c.id: c for c in s.scalars(select(SynthCandidate).where(SynthCandidate.id.in_(set(ids))))}

    # ------------------------------------------------------------------------------------------------ run
    def signature(self) -> dict[str, Any]:
        if self._signature is None:
            self._signature = self.llm.signature()
        return self._signature

    def run(self) -> RunReport:
        t0 = time.perf_counter()
        with self.store.transaction() as s:
            run = SynthRun(key=self.key, model=self.model, signature=self.signature(),
                           config=self.cfg.model_dump(mode="json") | {"prompt_version": S.PROMPT_VERSION},
                           counts={})
            s.add(run)
            s.flush()
            run_id = run.id
        self.run_id = run_id
        first = self.plan()
        report = RunReport(run_id, self.key, first)
        self.report = report
        self._load_context()
        remaining = self.cfg.limit if self.cfg.limit is not None else math.inf
        for rnd in range(self.cfg.rounds):
            plans = first if rnd == 0 else self.plan(limit=None if remaining == math.inf else int(remaining))
            planned = sum(p.planned for p in plans)
            if not planned and not self._has_open_work():
                break
            report.rounds += 1
            remaining -= planned
            self._create_top_ups(plans, rnd)
            self._brainstorm(plans, rnd)
            self._rewrite(rnd)
            self._dialogues(rnd)
            self._filter_dialogues()
            self._close_situations()
            if remaining <= 0:
                break
        report.seconds = time.perf_counter() - t0
        with self.store.transaction() as s:
            run = s.get(SynthRun, run_id)
            run.counts = report.as_dict()
            run.finished_at = utcnow()
        return report

    def _has_open_work(self) -> bool:
        with self.store.transaction() as s:
            q = select(func.count()).select_from(SynthCandidate).where(
                SynthCandidate.key == self.key, SynthCandidate.emotion.in_(self.emotions),
                SynthCandidate.state.in_([State.SCENARIO, State.OPEN]))
            return bool(s.scalar(q))

    def _load_context(self) -> None:
        """Few-shot pool (stored non-synthetic data) and the duplicate indexes (every stored row, plus situations
        of this key that passed their filters but are not stored yet)."""
        fc = self.cfg.filters
        self.sit_index = F.DedupIndex(fc.near_threshold, fc.num_perm)
        self.dlg_index = F.DedupIndex(fc.near_threshold, fc.num_perm)
        with self.store.open_session() as s:
            pool = [r for r in iter_records(s, statuses=LIVE) if r.source != Source.SYNTHETIC]
            self.pool = S.FewShotPool(pool)
            if not fc.enabled:
                return  # nothing to compare against
            ready = select(SynthCandidate.id, SynthCandidate.text).where(
                SynthCandidate.key == self.key, SynthCandidate.kind == Kind.SITUATION,
                SynthCandidate.state == State.READY)
            self.sit_index.add_many([*s.execute(select(Situation.id, Situation.text)).all(), *s.execute(ready).all()])
            self.dlg_index.add_many([(did, F.dialogue_text(p, q)) for did, p, q in
                                     s.execute(select(Dialogue.id, Dialogue.patient, Dialogue.supporter))])

    def _params(self, stage: str, rnd: int, *, stop: tuple[str, ...] = ()) -> Any:
        return GenParams(max_tokens=getattr(self.cfg.max_tokens, stage), temperature=self.cfg.temperature,
                         top_p=self.cfg.top_p, seed=self.cfg.seed + rnd, stop=stop)

    def _call(self, stage: str, prompts: Sequence[S.Prompt], params: Any, llm: LLM | None = None,
              save: Callable[[int, Completion | LLMFailure], None] | None = None) -> list[Completion | LLMFailure]:
        """batch_chat with persistence of each result as it arrives (the resume point) and a progress count."""
        if not prompts:
            return []
        done = [0]

        def arrived(i: int, result: Completion | LLMFailure) -> None:
            with self._lock:
                if save is not None:
                    save(i, result)
                done[0] += 1
                if self.progress is not None:
                    self.progress(stage, done[0], len(prompts))

        t = time.perf_counter()
        model = llm or self.llm
        concurrency = self.cfg.concurrency or model.default_concurrency
        if prompts[0].text is not None:
            out = model.batch_complete([p.text or "" for p in prompts], params, concurrency=concurrency,
                                       progress=arrived)
        else:
            out = model.batch_chat([p.messages for p in prompts], params, concurrency=concurrency, progress=arrived)
        self.report.llm_seconds += time.perf_counter() - t
        self.report.calls += len(prompts)
        return out

    def _next_seq(self, s: Any, emotion: str, kind: Kind) -> int:
        q = select(func.max(SynthCandidate.seq)).where(
            SynthCandidate.key == self.key, SynthCandidate.emotion == emotion, SynthCandidate.kind == kind)
        return (s.scalar(q) or 0) + 1

    def _cid(self, emotion: str, seq: int, prefix: str = "") -> str:
        return f"syn-{self.key[:8]}-{emotion.lower()}-{prefix}{seq:05d}"

    # ---------------------------------------------------------------------------------------- (a) brainstorm
    def _create_top_ups(self, plans: list[EmotionPlan], rnd: int) -> None:
        with self.store.transaction() as s:
            for p in plans:
                for gap in p.top_ups:
                    for i in range(gap.missing):
                        seq = self._next_seq(s, p.emotion, Kind.DIALOGUE)
                        s.add(SynthCandidate(
                            id=self._cid(p.emotion, seq, "t"), run_id=self.run_id, key=self.key, kind=Kind.DIALOGUE,
                            emotion=p.emotion, seq=seq, state=State.OPEN, situation_id=gap.situation_id,
                            want=gap.have + i, stages={}, filters=[]))  # want = slot index for a dialogue
                        s.flush()

    def _brainstorm(self, plans: list[EmotionPlan], rnd: int) -> None:
        n_per = self.cfg.scenarios_per_call
        calls: list[tuple[str, list[int], str, str, S.Prompt]] = []
        for p in plans:
            wants = list(p.new_situations)
            for c0 in range(0, len(wants), n_per):
                chunk = wants[c0 : c0 + n_per]
                rng = S.rng_for(self.cfg.seed, self.key, p.emotion, "brainstorm", rnd, c0)
                cond, stage = self.pool.condition_stage(rng)
                examples = self.pool.pick(p.emotion, self.cfg.shots, rng)
                prompt = (S.brainstorm_completion(p.emotion, cond, stage, examples) if self.completion
                          else S.brainstorm_prompt(p.emotion, len(chunk), cond, stage, examples))
                calls.append((p.emotion, chunk, cond, stage, prompt))

        def save(i: int, result: Completion | LLMFailure) -> None:
            emotion, wants, cond, stage, prompt = calls[i]
            info = {"prompt": prompt.digest, "fewshot": prompt.fewshot, "condition": cond, "stage": stage}
            with self.store.transaction() as s:
                if isinstance(result, LLMFailure):
                    self._add_dead(s, emotion, State.FAILED, f"brainstorm call failed: {result.reason}",
                                   {"brainstorm": info | {"raw": result.raw}})
                    return
                scenarios = S.parse_scenarios(result.text, len(wants))
                info |= {"raw": result.text, "finish_reason": result.finish_reason}
                if not scenarios:
                    self._add_dead(s, emotion, State.REJECTED, "format: brainstorm output has no scenario lines",
                                   {"brainstorm": info})
                    return
                for k, scenario in enumerate(scenarios):
                    seq = self._next_seq(s, emotion, Kind.SITUATION)
                    s.add(SynthCandidate(
                        id=self._cid(emotion, seq), run_id=self.run_id, key=self.key, kind=Kind.SITUATION,
                        emotion=emotion, seq=seq, state=State.SCENARIO, condition=cond, stage=stage, want=wants[k],
                        text=scenario, stages={"brainstorm": info | {"scenario": scenario, "index": k}}, filters=[]))
                    s.flush()

        stop = ("\n\n",) if self.completion else ()  # a base model's list ends at the first blank line
        self._call("brainstorm", [c[4] for c in calls], self._params("brainstorm", rnd, stop=stop), save=save)

    def _add_dead(self, s: Any, emotion: str, state: State, reason: str, stages: dict[str, Any]) -> None:
        """A brainstorm call that produced no candidate is still recorded, with its raw output."""
        seq = self._next_seq(s, emotion, Kind.SITUATION)
        s.add(SynthCandidate(id=self._cid(emotion, seq), run_id=self.run_id, key=self.key, kind=Kind.SITUATION,
                             emotion=emotion, seq=seq, state=state, want=0, stages=stages, filters=[], reason=reason))
        s.flush()
        self.report.counts[f"{state}_situations"] += 1
        self.report.reasons[reason.split(":", 1)[0]] += 1

    # ------------------------------------------------------------------------------------------ (b) rewrite
    def _rewrite(self, rnd: int) -> None:
        with self.store.open_session() as s:
            todo = list(s.scalars(select(SynthCandidate).where(
                SynthCandidate.key == self.key, SynthCandidate.emotion.in_(self.emotions),
                SynthCandidate.kind == Kind.SITUATION, SynthCandidate.state == State.SCENARIO,
            ).order_by(SynthCandidate.id)))
        need = [c for c in todo if "rewrite" not in c.stages]
        build = S.rewrite_completion if self.completion else S.rewrite_prompt
        prompts = []
        for c in need:
            rng = S.rng_for(self.cfg.seed, c.id, "rewrite")
            prompts.append(build(c.emotion, c.stages["brainstorm"]["scenario"],
                                 self.pool.pick(c.emotion, self.cfg.shots, rng)))

        save = self._saver("rewrite", [c.id for c in need], [{"prompt": p.digest, "fewshot": p.fewshot}
                                                              for p in prompts])
        stop = ("\n",) if self.completion else ()  # the situation is one line of the document
        self._call("rewrite", prompts, self._params("rewrite", rnd, stop=stop), save=save)
        for c in todo:
            self._filter_situation(c.id)

    def _saver(self, stage: str, ids: list[str], infos: list[dict[str, Any]]
               ) -> Callable[[int, Completion | LLMFailure], None]:
        """Write call i's output (raw text, or the failure and its raw text) into its candidate as it arrives."""

        def save(i: int, result: Completion | LLMFailure) -> None:
            if isinstance(result, LLMFailure):
                out = {"raw": result.raw, "failure": result.reason}
            else:
                out = {"raw": result.text, "finish_reason": result.finish_reason}
            with self.store.transaction() as s:
                row = s.get(SynthCandidate, ids[i])
                row.stages = {**row.stages, stage: infos[i] | out}

        return save

    def _filter_situation(self, cid: str) -> None:
        with self.store.transaction() as s:
            c = s.get(SynthCandidate, cid)
            info = c.stages.get("rewrite", {})
            if "failure" in info:
                self._finish(c, State.FAILED, [], f"rewrite call failed: {info['failure']}")
                return
            text, err = S.parse_situation(info.get("raw") or "")
            if err is not None or text is None:
                self._finish(c, State.REJECTED, [F.FilterResult("format", False, f"situation: {err}")])
                return
            c.text = text
            results = [F.FilterResult("format", True)]
            if self.cfg.filters.enabled:
                results += F.situation_rules(text, self.cfg.filters)
                if F.first_failure(results) is None:
                    results.append(self.sit_index.check(text))
            if F.first_failure(results) is not None:
                self._finish(c, State.REJECTED, results)
                return
            self.sit_index.add(c.id, text)
            c.state, c.filters = State.READY, [r.to_dict() for r in results]
            for slot in range(c.want):
                s.add(SynthCandidate(
                    id=f"{c.id}-d{slot + 1}", run_id=self.run_id, key=self.key, kind=Kind.DIALOGUE, emotion=c.emotion,
                    seq=c.seq, state=State.OPEN, parent_id=c.id, want=slot, stages={}, filters=[]))

    def _finish(self, c: SynthCandidate, state: State, results: list[F.FilterResult],
                reason: str | None = None) -> None:
        bad = F.first_failure(results)
        c.state = state
        c.filters = [r.to_dict() for r in results]
        c.reason = reason or (f"{bad.name}: {bad.reason}" if bad else None)
        self.report.counts[f"{state}_{c.kind}s"] += 1
        if c.reason:
            self.report.reasons[c.reason.split(":", 1)[0]] += 1

    # ----------------------------------------------------------------------------------------- (c) dialogue
    def _open_dialogues(self, s: Any) -> list[SynthCandidate]:
        return list(s.scalars(select(SynthCandidate).where(
            SynthCandidate.key == self.key, SynthCandidate.emotion.in_(self.emotions),
            SynthCandidate.kind == Kind.DIALOGUE, SynthCandidate.state == State.OPEN,
        ).order_by(SynthCandidate.id)))

    def _situation_text(self, s: Any, c: SynthCandidate) -> str:
        if c.parent_id:
            return s.get(SynthCandidate, c.parent_id).text
        return s.get(Situation, c.situation_id).text

    def _dialogues(self, rnd: int) -> None:
        with self.store.open_session() as s:
            need = [c for c in self._open_dialogues(s) if "dialogue" not in c.stages]
            sits = [self._situation_text(s, c) for c in need]
        build = S.dialogue_completion if self.completion else S.dialogue_prompt
        prompts, infos = [], []
        for c, sit in zip(need, sits, strict=True):
            rng = S.rng_for(self.cfg.seed, c.id, "dialogue")
            style = S.style_for(c.want, self.cfg.per_situation)
            p = build(c.emotion, sit, self.pool.pick(c.emotion, self.cfg.shots, rng), style=style)
            prompts.append(p)
            infos.append({"prompt": p.digest, "fewshot": p.fewshot, "style": style})
            if p.prefix:  # the completion prompt wrote the answer's start; parsing puts it back
                infos[-1]["prefix"] = p.prefix
        save = self._saver("dialogue", [c.id for c in need], infos)
        stop = (*STOP, "\n\n", "\n感情：", "\n状況：") if self.completion else STOP
        self._call("dialogue", prompts, self._params("dialogue", rnd, stop=stop), save=save)

    def _filter_dialogues(self) -> None:
        """Rules, then duplicates (in id order, so the batch's first copy wins), then the optional model checks
        on what is left; then store the survivors."""
        with self.store.open_session() as s:
            todo = [(c.id, c.stages.get("dialogue", {}), self._situation_text(s, c), c.emotion)
                    for c in self._open_dialogues(s) if "dialogue" in c.stages]
        verdicts: dict[str, tuple[State, list[F.FilterResult], str | None, Any]] = {}
        survivors = []
        for cid, info, sit, emotion in todo:
            if "failure" in info:
                verdicts[cid] = (State.FAILED, [], f"dialogue call failed: {info['failure']}", None)
                continue
            parsed = S.parse_dialogue(info.get("prefix", "") + (info.get("raw") or ""))
            if not parsed.ok:
                verdicts[cid] = (State.REJECTED, [F.FilterResult("format", False, parsed.error)], None, parsed)
                continue
            results = [F.FilterResult("format", True)]
            if self.cfg.filters.enabled:
                results += F.dialogue_rules(sit, parsed.patient, parsed.supporter, self.cfg.filters)
                if F.first_failure(results) is None:
                    dup = self.dlg_index.check(F.dialogue_text(parsed.patient, parsed.supporter))
                    results.append(dup)
                    if dup.ok:
                        self.dlg_index.add(cid, F.dialogue_text(parsed.patient, parsed.supporter))
            verdicts[cid] = (State.REJECTED, results, None, parsed)
            if F.first_failure(results) is None:
                survivors.append((cid, sit, emotion, parsed))
        for cid, results in self._model_checks(survivors).items():
            verdicts[cid][1].extend(results)
        for cid, (state, results, reason, parsed) in verdicts.items():
            ok = state != State.FAILED and F.first_failure(results) is None
            self._store_dialogue(cid, parsed, results) if ok else self._reject(cid, state, results, reason, parsed)

    def _model_checks(self, items: list[tuple[str, str, str, Any]]) -> dict[str, list[F.FilterResult]]:
        fc = self.cfg.filters
        out: dict[str, list[F.FilterResult]] = defaultdict(list)
        if not fc.enabled or not items:
            return out
        if fc.llm_safety:
            prompts = safety_prompts(items)
            params = self._params("safety", 0).model_copy(update={"temperature": 0.0})
            for (cid, *_), res in zip(items, self._call("safety", prompts, params, self.check_llm), strict=True):
                out[cid].append(safety_verdict(res))
        if fc.emotion_agreement:
            t = time.perf_counter()
            ranked = (predictor.choose_examples(self._pool_records(), self.cfg.seed)
                      if fc.agreement_shots else [])
            verdicts = emotion_agreement(self.check_llm, items, ranked, fc, self.progress)
            self.report.llm_seconds += time.perf_counter() - t
            for cid, res in zip([i[0] for i in items], verdicts, strict=True):
                out[cid].append(res)
        return out

    def _pool_records(self) -> list[Any]:
        return [r for rs in self.pool.by_emotion.values() for r in rs]

    def _reject(self, cid: str, state: State, results: list[F.FilterResult], reason: str | None, parsed: Any) -> None:
        with self.store.transaction() as s:
            c = s.get(SynthCandidate, cid)
            if parsed is not None and parsed.ok:

                c.text = format_dialogue(parsed.patient, parsed.supporter)
            self._finish(c, state, results, reason)

    def _store_dialogue(self, cid: str, parsed: Any, results: list[F.FilterResult]) -> None:
        """Accept: core rows in one transaction (the situation too, with its first accepted dialogue)."""
        with self.store.transaction() as s:
            c = s.get(SynthCandidate, cid)
            parent = s.get(SynthCandidate, c.parent_id) if c.parent_id else None
            sid = c.situation_id
            if parent is not None:
                if parent.core_id is None:
                    s.add(Situation(
                        id=parent.id, emotion=parent.emotion, text=parent.text, condition=parent.condition,
                        stage=parent.stage, source=str(Source.SYNTHETIC), status=str(Status.PENDING),
                        author=self._author(), meta={"synth": self._provenance(parent)}, batch=self._batch()))
                    s.flush()
                    parent.core_id, parent.state = parent.id, State.ACCEPTED
                    self.report.counts["accepted_situations"] += 1
                sid = parent.core_id

            c.text = format_dialogue(parsed.patient, parsed.supporter)
            c.situation_id = sid
            self._finish(c, State.ACCEPTED, results)
            c.core_id = c.id
            s.add(Dialogue(id=c.id, situation_id=sid, patient=parsed.patient, supporter=parsed.supporter,
                           source=str(Source.SYNTHETIC), status=str(Status.PENDING), author=self._author(),
                           meta={"synth": self._provenance(c)}, batch=self._batch()))

    def _close_situations(self) -> None:
        """A situation whose dialogues were all turned down is rejected too (with its dialogues' reasons)."""
        with self.store.transaction() as s:
            ready = s.scalars(select(SynthCandidate).where(
                SynthCandidate.key == self.key, SynthCandidate.kind == Kind.SITUATION,
                SynthCandidate.state == State.READY, SynthCandidate.emotion.in_(self.emotions))).all()
            for c in ready:
                kids = s.scalars(select(SynthCandidate).where(SynthCandidate.parent_id == c.id)).all()
                if kids and all(k.state in State.terminal() for k in kids):
                    why = "; ".join(sorted({k.reason or k.state for k in kids}))
                    self._finish(c, State.REJECTED, [F.FilterResult(**r) for r in c.filters],
                                 f"dialogues: none of its {len(kids)} dialogues passed ({why})"[:2000])

    # ------------------------------------------------------------------------------------------ provenance
    def _author(self) -> str:
        return f"synth:{self.model}"[:128]

    def _batch(self) -> str:
        return f"synth-{self.run_id}"

    def _provenance(self, c: SynthCandidate) -> dict[str, Any]:
        prov: dict[str, Any] = {
            "run": self.run_id, "candidate": c.id, "key": self.key, "model": self.model,
            "signature": self.signature(), "prompt_version": S.PROMPT_VERSION, "prompt_style": self.style,
            "seed": self.cfg.seed,
            "params": {"temperature": self.cfg.temperature, "top_p": self.cfg.top_p, "shots": self.cfg.shots,
                       "max_tokens": self.cfg.max_tokens.model_dump()},
            "stages": c.stages, "filters": c.filters, "filter_config": self.cfg.filters.model_dump(mode="json"),
        }
        flags = sorted({f["flag"] for f in c.filters if f.get("flag")})
        if flags:
            prov["flags"] = flags
        if self.cfg.filters.enabled and (self.cfg.filters.llm_safety or self.cfg.filters.emotion_agreement):
            prov["check_model"] = self.check_model
        return prov


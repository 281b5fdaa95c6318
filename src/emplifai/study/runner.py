"""`emplifai run CONFIG --out DIR`: the whole study from one validated config, resumable, with a report.

Stages run in data-flow order: validate → split → predict → finetune → sample → generate → judge → agree →
report. Each stage's fingerprint (its config section, the fingerprints of the stages it reads, the emplifai
version) is kept in DIR/state.json once the stage finishes, so a rerun skips finished stages without loading a
model, and a stage interrupted half-way resumes item by item (every stage stores its items as they finish).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from emplifai import __version__, finetune
from emplifai.dataset.ingest import bundled_corpus_path, import_file, validate_file
from emplifai.dataset.splits import make_split
from emplifai.errors import InputError, UserError
from emplifai.evaluate import generate as g
from emplifai.evaluate.judge import JudgeConfig, judge
from emplifai.evaluate.ratings import import_sheets
from emplifai.evaluate.sample import make_sample
from emplifai.formatting import to_json
from emplifai.llm.meter import Ledger, metering
from emplifai.predict.validate import validate_taxonomy
from emplifai.provenance import json_digest, path_digest
from emplifai.store.db import open_store
from emplifai.study import spend
from emplifai.study.config import STAGES, RunConfig, load_config
from emplifai.study.report import build_report

__all__ = ["STAGES", "RunConfig", "State", "Study", "load_config"]

def _digest(*parts: Any) -> str:
    return json_digest(list(parts), 16)


class State:
    """DIR/state.json: per stage the fingerprint it finished with, its summary and its wall time."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def done(self, stage: str, fingerprint: str) -> bool:
        return self.data.get(stage, {}).get("fingerprint") == fingerprint

    def finish(self, stage: str, fingerprint: str, summary: dict[str, Any], seconds: float,
               spend: dict[str, Any] | None = None) -> None:
        self.data[stage] = {"fingerprint": fingerprint, "summary": summary, "seconds": round(seconds, 2),
                            "spend": spend or {}}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(to_json(self.data))
        tmp.replace(self.path)  # a kill never leaves a half-written state


Notify = Callable[[str], None]


class ProgressSink(Protocol):
    """Where the study reports progress (the CLI's Rich board; nothing in tests)."""

    def update(self, task: str, done: int, total: int | None) -> None: ...

    def bar(self, task: str, total: int | None) -> Callable[[int], None]: ...


class Study:
    """Runs the configured stages against one store and one output folder."""

    def __init__(self, cfg: RunConfig, out: Path, notify: Notify = print, progress: ProgressSink | None = None):

        self.cfg, self.out, self.notify = cfg, out, notify
        out.mkdir(parents=True, exist_ok=True)
        self.db = cfg.db or f"sqlite:///{out.resolve() / 'emplifai.db'}"
        self.store = open_store(self.db)
        self.state = State(out / "state.json")
        self.fp: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self.extra_models: list[str] = []  # the fine-tuned model joins predict/generate when enabled
        self.progress = progress
        self.ledger = Ledger()

    # ------------------------------------------------------------------------------------------ driver
    def run(self) -> dict[str, Any]:
        upstream = {
            "validate": [], "split": ["validate"], "predict": ["split"], "finetune": ["split"],
            "sample": ["split"], "generate": ["sample", "finetune"], "judge": ["generate"],
            "agree": ["judge"], "report": ["predict", "judge", "agree"],
        }
        self._run_stages(upstream)
        return self.timings

    def _run_stages(self, upstream: dict[str, list[str]]) -> None:
        for stage in STAGES:
            if stage not in self.cfg.stages:
                continue
            section = {"validate": self.cfg.dataset, "report": None}.get(stage, getattr(self.cfg, stage, None))
            fingerprint = _digest(stage, section.model_dump() if section is not None else None,
                                  [self.fp.get(u) for u in upstream[stage]], self._inputs(stage), __version__)
            self.fp[stage] = fingerprint
            if self.state.done(stage, fingerprint) and (stage != "report" or (self.out / "report.html").exists()):
                self.timings[stage] = 0.0
                self.notify(f"[{stage}] already done (cached)")
                if stage == "finetune":
                    self._use_finetuned(self.state.data[stage]["summary"].get("spec"))
                continue
            self.notify(f"[{stage}] running…")
            t = time.perf_counter()
            with metering(self.ledger, stage):  # every model a stage loads is counted under its name
                summary = getattr(self, f"_stage_{stage}")()
            self.timings[stage] = time.perf_counter() - t
            self.state.finish(stage, fingerprint, summary, self.timings[stage],
                              spend.stage_spend(self.cfg, self.ledger, stage))
            self.notify(f"[{stage}] done in {self.timings[stage]:.1f}s")

    def _inputs(self, stage: str) -> Any:
        if stage == "validate":
            return path_digest(self._dataset_path())
        if stage == "agree":
            return [path_digest(Path(p)) for p in self.cfg.agree.ratings if Path(p).exists()]
        return None

    def _dataset_path(self) -> Path:

        return bundled_corpus_path() if self.cfg.dataset.bundled else Path(self.cfg.dataset.path)  # type: ignore[arg-type]

    def _use_finetuned(self, spec: str | None) -> None:
        if spec and spec not in self.extra_models:
            self.extra_models.append(spec)

    # ------------------------------------------------------------------------------------------ stages
    def _stage_validate(self) -> dict[str, Any]:

        path = self._dataset_path()
        report = validate_file(path)
        if report.problems:
            raise InputError(report.problems, "the study did not start")
        imported = import_file(self.store, path)
        return {"file": str(path), "rows": report.rows, "dialogues_added": imported.dialogues_added,
                "already_present": imported.unchanged}

    def _stage_split(self) -> dict[str, Any]:

        res = make_split(self.store, seed=self.cfg.split.seed, fractions=self.cfg.split.fractions)
        return {"manifest_id": res.manifest_id, "sizes": res.sizes, "content_hash": res.content_hash}

    def _stage_predict(self) -> dict[str, Any]:

        p = self.cfg.predict
        result = validate_taxonomy(
            self.store, models=[*p.models, *self.extra_models], mode=p.mode, split=p.split, limit=p.limit,
            shots=p.shots, definitions=p.definitions, chat=p.chat, concurrency=p.concurrency, baseline=p.baseline,
            encoder=p.encoder, layer=p.layer,
            vectors=p.vectors,
            out=self.out / "table2", notify=self.notify, progress=self._predict_progress(),
        )
        return {"models": [e["entry"]["model"] for e in result], "run_ids": [e["entry"]["run_id"] for e in result]}

    def _stage_finetune(self) -> dict[str, Any]:
        if not self.cfg.finetune.enabled:
            return {"enabled": False}

        ft_cfg = finetune.load_config(self.cfg.finetune.config, self.cfg.finetune.overrides)
        res = finetune.run(ft_cfg, self.out / "finetune", self.db)
        self._use_finetuned(res.spec)
        return {"enabled": True, "spec": res.spec, "out": str(res.out)}

    def _stage_sample(self) -> dict[str, Any]:

        s = self.cfg.sample
        r = make_sample(self.store, n=s.n, seed=s.seed, name=s.name, replace=True)
        return {"name": r.name, "n": r.n, "emotions": r.emotions}

    def _stage_generate(self) -> dict[str, Any]:

        out: dict[str, Any] = {}
        name = self.cfg.sample.name
        if self.cfg.generate.human:
            out["human"] = vars(g.add_human(self.store, name))
        for spec in [*self.cfg.generate.models, *self.extra_models]:
            r = g.generate(self.store, spec=spec, sample_name=name, max_tokens=self.cfg.generate.max_tokens,
                           seed=self.cfg.generate.seed, concurrency=self.cfg.generate.concurrency,
                           progress=self._bar(f"generate {spec}", self.cfg.sample.n))
            out[spec] = vars(r)
            if r.backend_failures:
                raise UserError(f"{spec}: {len(r.backend_failures)} generation(s) failed at the backend "
                                f"(first: {r.backend_failures[0]}); rerun to retry them")
        return out

    def _stage_judge(self) -> dict[str, Any]:
        j = self.cfg.judge
        out: dict[str, Any] = {}
        for spec in j.panel:  # each judge of a panel is checked by the blind rule on its own
            cfg = JudgeConfig(spec=spec, sample=self.cfg.sample.name, metrics=j.metric_keys, shots=j.shots,
                              allow_self=j.allow_self_judge, limit=j.limit, concurrency=j.concurrency,
                              constrained=j.constrained, score_only=j.score_only)
            r = judge(self.store, cfg, progress=self._bar(f"judge {spec}", None))
            if r.failed:
                self.notify(f"[judge] {spec}: {r.failed} judgement(s) failed after retries; stored with raw output")
            out[spec] = {"scored": r.scored, "by_rule": r.by_rule, "failed": r.failed, "skipped": r.skipped,
                         "invalid_answers": r.invalid, "structured": r.structured}
        return out if len(j.panel) > 1 else out[j.panel[0]]

    def _stage_agree(self) -> dict[str, Any]:
        if not self.cfg.agree.ratings:
            return {"ratings": 0}

        r = import_sheets(self.store, [Path(p) for p in self.cfg.agree.ratings])
        return {"ratings": r.added + r.unchanged, "raters": sorted(r.raters)}

    def _stage_report(self) -> dict[str, Any]:

        paths = build_report(self)
        return {k: str(v) for k, v in paths.items()}

    def _predict_progress(self) -> Callable[[str, int, int], None]:
        def update(spec: str, done: int, total: int) -> None:
            if self.progress is not None:
                self.progress.update(f"predict {spec}", done, total)

        return update

    def _bar(self, description: str, total: int | None) -> Callable[[int], None]:
        """A Rich progress bar for one stage's items (quiet when stderr is not a terminal)."""
        if self.progress is None:
            return lambda n=1: None
        return self.progress.bar(description, total)

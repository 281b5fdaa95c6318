"""`emplifai run CONFIG --out DIR`: the whole study from one validated config, resumable, with a report.

Stages run in data-flow order: validate → split → predict → finetune → sample → generate → judge → agree →
report. Each stage's fingerprint (its config section, the fingerprints of the stages it reads, the emplifai
version) is kept in DIR/state.json once the stage finishes, so a rerun skips finished stages without loading a
model, and a stage interrupted half-way resumes item by item (every stage stores its items as they finish).
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from emplifai import __version__, finetune
from emplifai.dataset.ingest import bundled_corpus_path, import_file, validate_file
from emplifai.dataset.splits import make_split
from emplifai.errors import InputError, UserError
from emplifai.evaluate import generate as g
from emplifai.evaluate.judge import JudgeConfig, judge
from emplifai.evaluate.ratings import import_sheets
from emplifai.evaluate.rubrics import METRICS
from emplifai.evaluate.sample import make_sample
from emplifai.formatting import to_json
from emplifai.predict.validate import validate_taxonomy
from emplifai.provenance import json_digest, path_digest
from emplifai.store.db import open_store
from emplifai.study.report import build_report

STAGES = ("validate", "split", "predict", "finetune", "sample", "generate", "judge", "agree", "report")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSection(_Section):
    # "bundled" (the corpus shipped with emplifai) is a different thing from [sample] (the 100-pair draw);
    # configs written before the rename say `sample = true`, which is still read.
    bundled: bool = Field(True, description="Use the bundled corpus.",
                          validation_alias=AliasChoices("bundled", "sample"))
    path: str | None = Field(None, description="A JSONL/CSV/Parquet file or datasets folder instead.")

    @property
    def sample(self) -> bool:
        return self.bundled

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSection:
        if self.bundled == (self.path is not None):
            raise ValueError("set either bundled = true or path = FILE, not both")
        return self


class SplitSection(_Section):
    seed: int = 42
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)


#: one line for every stage's concurrency setting
CONCURRENCY = "parallel requests; default: the backend's (8 on HTTP servers, which batch them; 1 in process)"


class PredictSection(_Section):
    models: list[str] = ["embedded"]
    mode: Literal["score", "generate"] = "score"
    split: Literal["train", "validation", "test"] = "test"
    limit: int | None = Field(None, ge=1)
    shots: int = Field(0, ge=0, le=28)
    definitions: bool = Field(True, description="List each label with its definition (a longer prompt).")
    baseline: bool = True
    encoder: str | None = None
    layer: int | None = None
    vectors: str = "chive"
    concurrency: int | None = Field(None, ge=1, description=CONCURRENCY)


class FinetuneSection(_Section):
    enabled: bool = False
    config: str | None = None
    overrides: list[str] = []


class SampleSection(_Section):
    n: int = Field(100, ge=1)
    seed: int = 42
    name: str = "default"


class GenerateSection(_Section):
    models: list[str] = ["embedded"]
    human: bool = True
    max_tokens: int = Field(256, ge=16)
    seed: int = 42
    concurrency: int | None = Field(None, ge=1, description=CONCURRENCY)


class JudgeSection(_Section):
    judge: str = "embedded"
    metrics: list[str] | None = None
    shots: int = Field(2, ge=0, le=2)
    allow_self_judge: bool = False
    limit: int | None = Field(None, ge=1)
    concurrency: int | None = Field(None, ge=1, description=CONCURRENCY)


class AgreeSection(_Section):
    ratings: list[str] = Field([], description="Filled rating sheets (CSV/XLSX) to import.")
    source: str = "human"


class RunConfig(_Section):
    db: str | None = Field(None, description="Database URL; default: DIR/emplifai.db")
    stages: list[Literal[STAGES]] = list(STAGES)  # type: ignore[valid-type]
    dataset: DatasetSection = DatasetSection()
    split: SplitSection = SplitSection()
    predict: PredictSection = PredictSection()
    finetune: FinetuneSection = FinetuneSection()
    sample: SampleSection = SampleSection()
    generate: GenerateSection = GenerateSection()
    judge: JudgeSection = JudgeSection()
    agree: AgreeSection = AgreeSection()


def load_config(path: Path) -> RunConfig:
    """Read TOML or YAML; every problem names the config key."""
    if not path.exists():
        raise UserError(f"{path}: no such config file")
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {exc}") from exc
    try:
        return RunConfig.model_validate(raw or {})
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()]
        raise UserError(f"{path}: invalid config:\n" + "\n".join(lines)) from exc


def _digest(*parts: Any) -> str:
    return json_digest(list(parts), 16)


class State:
    """DIR/state.json: per stage the fingerprint it finished with, its summary and its wall time."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def done(self, stage: str, fingerprint: str) -> bool:
        return self.data.get(stage, {}).get("fingerprint") == fingerprint

    def finish(self, stage: str, fingerprint: str, summary: dict[str, Any], seconds: float) -> None:
        self.data[stage] = {"fingerprint": fingerprint, "summary": summary, "seconds": round(seconds, 2)}
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
            summary = getattr(self, f"_stage_{stage}")()
            self.timings[stage] = time.perf_counter() - t
            self.state.finish(stage, fingerprint, summary, self.timings[stage])
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
            shots=p.shots, definitions=p.definitions, baseline=p.baseline, encoder=p.encoder, layer=p.layer,
            vectors=p.vectors, concurrency=p.concurrency,
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
        cfg = JudgeConfig(spec=j.judge, sample=self.cfg.sample.name, metrics=tuple(j.metrics or METRICS),
                          shots=j.shots, allow_self=j.allow_self_judge, limit=j.limit, concurrency=j.concurrency)
        r = judge(self.store, cfg, progress=self._bar(f"judge {j.judge}", None))
        if r.failed:
            self.notify(f"[judge] {r.failed} judgement(s) failed after retries; stored with raw output")
        return {"scored": r.scored, "by_rule": r.by_rule, "failed": r.failed, "skipped": r.skipped}

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

"""SynthEmpathy's experiment as one command: `emplifai experiment CONFIG --out DIR`.

Two LoRA fine-tunes that differ only in their training sources — crowd dialogues only, then crowd + synthetic
dialogues that passed review — then :func:`emplifai.finetune.compare.run` on both (generation on held-out test
situations, the judge on the paper's 7 rubrics and EPITOME's 3 mechanisms, taxonomy validation). Every step is
an existing stage and resumes on its own (a finished fine-tune is reused, stored generations, judgements and
predictions are not redone), so a rerun after a kill continues where it stopped. DIR/experiment.json records
the provenance: the config, each arm's training config, data and model spec, the comparison's judge and sample.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emplifai import __version__
from emplifai.errors import UserError
from emplifai.evaluate.rubrics import check_metrics, rubric_set
from emplifai.formatting import to_json
from emplifai.records import Source, Status
from emplifai.store import repo
from emplifai.store.db import open_store

from . import compare
from .config import FinetuneConfig, load_config
from .data import load_examples
from .train import run as train

ARMS = ("crowd", "crowd_synthetic")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Arm(_Section):
    config: str = Field(description="The arm's fine-tuning config (YAML/TOML), relative to the experiment config.")
    overrides: list[str] = Field([], description="key=value settings over it (as `emplifai finetune --set`).")


class CompareSection(_Section):
    n: int = Field(100, ge=1, description="Test situations to generate from (seeded sample).")
    seed: int = 42
    judge: str | None = Field(None, description="Judge spec; default the base model (the crowd arm's base_model).")
    rubrics: str = Field("all", description="paper | epitome | all (SynthEmpathy's measure is epitome).")
    metrics: list[str] | None = Field(None, description="A subset of metric keys instead of rubrics.")
    predict_limit: int | None = Field(None, ge=1, description="Taxonomy validation on the first N test dialogues.")
    max_tokens: int = Field(160, ge=16)


class ExperimentConfig(_Section):
    db: str | None = Field(None, description="The store with the split and the reviewed synthetic dialogues.")
    crowd: Arm
    crowd_synthetic: Arm
    compare: CompareSection = CompareSection()

    @property
    def metric_keys(self) -> tuple[str, ...]:
        c = self.compare
        return check_metrics(c.metrics) if c.metrics else rubric_set(c.rubrics)


@dataclass
class ExperimentResult:
    provenance: dict[str, Any]
    compare: compare.CompareResult
    path: Path


def read(path: Path) -> tuple[ExperimentConfig, dict[str, FinetuneConfig]]:
    """The experiment config and both arms' fine-tuning configs; errors name the file and the key."""
    if not path.is_file():
        raise UserError(f"{path}: no such experiment config")
    try:
        cfg = ExperimentConfig.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from exc
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise UserError(f"{path}: invalid experiment config:\n" + "\n".join(lines)) from exc
    cfg.metric_keys  # noqa: B018  (an unknown rubric set or metric fails here, before any training)
    arms = {name: load_config(path.parent / getattr(cfg, name).config, getattr(cfg, name).overrides) for name in ARMS}
    a, b = (arms[n].model_dump(exclude={"train_sources"}) for n in ARMS)
    if a != b:
        diff = sorted(k for k in a if a[k] != b[k])
        raise UserError(f"{path}: the arms must differ only in train_sources; they also differ in {', '.join(diff)}")
    return cfg, arms


def _check_data(db: str | None, split_name: str) -> int:
    """The approved synthetic dialogues in the train split; a store the experiment cannot use fails here,
    before any training."""
    store = open_store(db)
    try:
        with store.open_session() as s:
            manifest = repo.latest_manifest(s, split_name)
            if manifest is None:
                raise UserError(f"no split named {split_name!r} in the database; run `emplifai dataset split` first")
            if not any(True for _ in repo.iter_records(s, split="test", manifest=manifest)):
                raise UserError("the test split is empty: the arms are compared on held-out test situations "
                                "(more data, or other split fractions)")
            synthetic = sum(r.source == Source.SYNTHETIC and r.status == Status.APPROVED
                            for r in repo.iter_records(s, split="train", manifest=manifest))
    finally:
        store.dispose()
    if not synthetic:
        raise UserError("the training split has no approved synthetic dialogue, so both arms would train on the "
                        "same data: generate them (`emplifai synth`), review them (`emplifai dataset decide "
                        "approve`), then `emplifai dataset split` again")
    return synthetic


def run(config: Path, out: Path, db: str | None = None, *, progress: bool = True) -> ExperimentResult:
    """Fine-tune both arms, compare them, write DIR/experiment.json. A rerun reuses what is finished."""
    cfg, arms = read(config)
    db = db or cfg.db or None
    synthetic = _check_data(db, arms["crowd_synthetic"].split_name)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    trained: dict[str, Any] = {}
    for name in ARMS:
        ft = arms[name]
        examples, _, manifest_id = load_examples(db, ft)
        res = train(ft, out / f"ft-{name}", db, progress=progress)
        if not res.spec:
            raise UserError(f"{name}: the fine-tune wrote no GGUF adapter (gguf_adapter = false); the comparison "
                            "generates through llama.cpp and needs it")
        trained[name] = {"spec": res.spec, "out": str(res.out), "config": ft.model_dump(mode="json"),
                         "train_examples": len(examples), "split_manifest": manifest_id,
                         "steps": res.metrics.get("steps"), "train_loss": res.metrics.get("train_loss"),
                         "base_model": ft.base_model}
    c = cfg.compare
    judge = c.judge or ("embedded" if arms["crowd"].base_model == "embedded" else None)
    if judge is None:
        raise UserError(f"{config}: set [compare] judge (the base model {arms['crowd'].base_model!r} is no spec)")
    result = compare.run(before=trained["crowd"]["spec"], after=trained["crowd_synthetic"]["spec"],
                         out=out / "compare", n=c.n, seed=c.seed, judge=judge, metrics=cfg.metric_keys,
                         predict_limit=c.predict_limit, max_tokens=c.max_tokens, db=db)
    provenance = {
        "experiment": "SynthEmpathy: crowd only vs crowd + reviewed synthetic", "config_file": str(config),
        "config": cfg.model_dump(mode="json"), "approved_synthetic_in_train": synthetic, "arms": trained,
        "compare": {"md": str(result.md_path), "json": str(result.json_path), "judge": result.table["judge"],
                    "sample": result.table["sample"]},
        "started_at": started, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "emplifai": __version__,
    }
    path = out / "experiment.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(to_json(provenance), encoding="utf-8")
    tmp.replace(path)
    return ExperimentResult(provenance, result, path)

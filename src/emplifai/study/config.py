"""The study config: pydantic sections, every key checked, and `${VAR}` read from the environment.

Strings may name environment variables as ``${VAR}`` or ``${VAR:-default}`` (``$${`` is a literal ``${``), so
one config (configs/paper.toml) points at the servers of whoever runs it. An unset variable without a default
is an error naming the config file, the key and the variable; ``emplifai run --plan`` reads the config with
them left unset and says which ones it still needs.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from emplifai.errors import UserError
from emplifai.evaluate.rubrics import check_metrics, rubric_set
from emplifai.llm import LLMError, parse_spec
from emplifai.llm.registry import key_source

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
    split: Literal["train", "validation", "test", "all"] = Field(
        "test", description="The split to evaluate; all: every pair, no split needed (the paper's n = 4,125).")
    limit: int | None = Field(None, ge=1)
    shots: int = Field(0, ge=0, le=28)
    definitions: bool = Field(True, description="List each label with its definition (a longer prompt).")
    chat: bool = Field(False, description="generate mode: send the prompt as a chat turn (API chat models).")
    concurrency: int | None = Field(None, ge=1, description=CONCURRENCY)
    baseline: bool = True
    encoder: str | None = None
    layer: int | None = None
    vectors: str = "chive"


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
    judges: list[str] | None = Field(None, description="A panel: several judge specs (instead of judge).")
    rubrics: Literal["paper", "epitome", "all"] = "paper"
    metrics: list[str] | None = Field(None, description="A subset of metric keys (overrides rubrics).")
    constrained: bool = True
    shots: int = Field(2, ge=0, le=2)
    allow_self_judge: bool = False
    score_only: bool = False  # read the score from the probabilities of the scale's answers, no feedback text
    limit: int | None = Field(None, ge=1)
    concurrency: int | None = Field(None, ge=1, description=CONCURRENCY)

    @model_validator(mode="after")
    def _panel(self) -> JudgeSection:
        if self.judges is not None and (not self.judges or len(set(self.judges)) != len(self.judges)):
            raise ValueError("judges must list distinct judge specs")
        if self.metrics is not None:
            check_metrics(self.metrics)
        return self

    @property
    def panel(self) -> list[str]:
        return list(self.judges) if self.judges else [self.judge]

    @property
    def metric_keys(self) -> tuple[str, ...]:
        return check_metrics(self.metrics) if self.metrics else rubric_set(self.rubrics)


class AgreeSection(_Section):
    ratings: list[str] = Field([], description="Filled rating sheets (CSV/XLSX) to import.")
    source: str = "human"


class Price(_Section):
    """What an API model costs, per million tokens; models without an entry are counted at no cost."""

    model: str = Field(description="The model spec exactly as the stage sections name it.")
    prompt_per_million: float = Field(ge=0)
    completion_per_million: float = Field(ge=0)
    currency: str = "USD"


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
    prices: list[Price] = Field([], description="Price table for API models (spend in state.json, report, --plan).")

    @model_validator(mode="after")
    def _one_price_per_model(self) -> RunConfig:
        models = [p.model for p in self.prices]
        if len(set(models)) != len(models):
            raise ValueError("each model may have one price entry")
        return self

    def price(self, spec: str) -> Price | None:
        return next((p for p in self.prices if p.model == spec), None)


_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Unset:
    """A ``${VAR}`` without a value: where it was used and which variable it names."""

    key: str
    variable: str


def expand(value: Any, env: Mapping[str, str], unset: list[Unset], key: str = "") -> Any:
    """``value`` with every ``${VAR}`` in its strings replaced (recursively); unset ones are appended to ``unset``
    and left as written."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            name, default = m.group(1), m.group(2)
            if env.get(name):
                return env[name]
            if default is not None:
                return default
            unset.append(Unset(key or "(top level)", name))
            return m.group(0)

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand(v, env, unset, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, env, unset, f"{key}.{i}" if key else str(i)) for i, v in enumerate(value)]
    return value


def spec_keys(cfg: RunConfig) -> list[tuple[str, str]]:
    """(config key, model spec) for every model the stages load, named as the config names them."""
    j = cfg.judge
    judges = [(f"judge.judges.{i}", x) for i, x in enumerate(j.judges)] if j.judges else [("judge.judge", j.judge)]
    return [*((f"predict.models.{i}", x) for i, x in enumerate(cfg.predict.models)),
            *((f"generate.models.{i}", x) for i, x in enumerate(cfg.generate.models)), *judges]


def missing_keys(cfg: RunConfig, env: Mapping[str, str] | None = None) -> list[Unset]:
    """Every ``+key:VAR`` (the API key's variable, llm/registry.py) not set, as an unset variable of its key."""
    out = []
    for key, spec in spec_keys(cfg):
        try:
            s = parse_spec(spec)
        except LLMError:
            continue  # reported as an invalid spec
        if s.key_var and not key_source(s, env)[1]:
            out.append(Unset(key, s.key_var))
    return out


def read_config(path: Path, env: Mapping[str, str] | None = None) -> tuple[RunConfig, list[Unset]]:
    """The validated config with the environment read in, and the variables it names that are not set."""
    if not path.exists():
        raise UserError(f"{path}: no such config file")
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {exc}") from exc
    unset: list[Unset] = []
    raw = expand(raw or {}, os.environ if env is None else env, unset)
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()]
        raise UserError(f"{path}: invalid config:\n" + "\n".join(lines)) from exc
    return cfg, [*unset, *missing_keys(cfg, os.environ if env is None else env)]


def load_config(path: Path, env: Mapping[str, str] | None = None) -> RunConfig:
    """Read TOML or YAML; every problem names the config key, every unset variable the key that uses it."""
    cfg, unset = read_config(path, env)
    if unset:
        lines = [f"  {u.key}: environment variable {u.variable} is not set" for u in unset]
        raise UserError(f"{path}: the config needs environment variables that are not set (see the README; "
                        "`emplifai run CONFIG --plan` lists them):\n" + "\n".join(lines))
    return cfg

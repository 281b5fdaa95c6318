"""`emplifai run CONFIG --plan`: what a study will do and spend, without loading a model or contacting a server.

The plan validates the config, resolves every model spec on paper (a file exists, a package is installed, an
API key is set; no server is asked), and sizes each stage from the data the study will use: the store's
dialogues plus the rows of the configured dataset file, split and sampled exactly as the stages will (the
same pure functions), with every prompt rendered from the real templates. Tokens are estimated from the
prompts' characters (:data:`CHARS_PER_TOKEN`); completions are counted at their ``max_tokens`` bound, so the
figures and the cost are upper bounds for first attempts (judge retries can add up to ``retries`` times more).
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emplifai.dataset.formats import check_record, iter_rows
from emplifai.dataset.ingest import bundled_corpus_path
from emplifai.dataset.splits import situation_splits
from emplifai.errors import UserError
from emplifai.evaluate.judge import JudgeConfig
from emplifai.evaluate.sample import draw
from emplifai.llm import LLMError, parse_spec
from emplifai.llm.embedded import GGUF_PACKAGE
from emplifai.llm.registry import DEFAULT_KEY_VARS, key_source
from emplifai.predict import prompt as pp
from emplifai.prompts import generation as gen
from emplifai.prompts import judge as jp
from emplifai.records import Record
from emplifai.store.repo import LIVE, SPLITS
from emplifai.study.config import RunConfig, Unset
from emplifai.study.spend import cost

#: characters per token for the estimate: a deliberate upper bound on tokens. Gemma 3's tokenizer gives 1.6–1.7
#: characters per token on the bundled corpus and the prediction prompt; tokenizers with smaller vocabularies
#: come nearer 1 on Japanese.
CHARS_PER_TOKEN = 1.0


def tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


@dataclass
class ModelPlan:
    spec: str
    resolved: str  # what the spec names, resolved on paper
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0  # at most (max_tokens per call)
    max_calls: int = 0  # with every retry used
    cost: dict[str, Any] | None = None


@dataclass
class StagePlan:
    stage: str
    items: dict[str, int | None] = field(default_factory=dict)
    models: list[ModelPlan] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Plan:
    config: str
    stages: list[StagePlan]
    problems: list[str]
    unset: list[Unset]
    data_source: str

    @property
    def ready(self) -> bool:
        return not self.problems and not self.unset

    def totals(self) -> dict[str, Any]:
        out: dict[str, Any] = {"calls": 0, "max_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": {}}
        for st in self.stages:
            for m in st.models:
                for k in ("calls", "max_calls", "prompt_tokens", "completion_tokens"):
                    out[k] += getattr(m, k)
                if m.cost:
                    cur = m.cost["currency"]
                    out["cost"][cur] = round(out["cost"].get(cur, 0) + m.cost["amount"], 6)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "ready": self.ready, "problems": self.problems,
                "unset": [asdict(u) for u in self.unset], "data": self.data_source,
                "chars_per_token": CHARS_PER_TOKEN, "stages": [asdict(s) for s in self.stages],
                "totals": self.totals()}


# ------------------------------------------------------------------------------------------------ specs
def resolve_spec(spec: str, env: dict[str, str] | os._Environ[str] = os.environ) -> tuple[str, str | None]:
    """(what the spec names, the problem or None): files and packages looked up, no model loaded, no server
    contacted."""
    if "${" in spec:
        return "unresolved: an environment variable it names is not set", None
    try:
        s = parse_spec(spec)
    except LLMError as exc:
        return "invalid", str(exc).splitlines()[0]
    if s.kind == "embedded":
        ok = importlib.util.find_spec(GGUF_PACKAGE.replace("-", "_")) is not None
        what = f"embedded Gemma 3 270M Q4_K_M, in-process (package {GGUF_PACKAGE} {'installed' if ok else 'missing'})"
        return _with_adapter(what, s.adapter), None if ok else f"{spec}: the package {GGUF_PACKAGE} is not installed"
    if s.kind == "gguf":
        p = Path(s.target)
        problem = None if p.is_file() else f"{spec}: no GGUF file at {p}"
        what = _with_adapter(f"GGUF file {p.resolve()}, in-process llama.cpp", s.adapter)
        return what, problem or _adapter(s.adapter)
    if s.kind == "hf":
        p = Path(s.target)
        return f"transformers folder {p.resolve()} (CPU)", None if p.is_dir() else f"{spec}: no folder at {p}"
    if s.kind == "openai":
        var, ok = key_source(s, env)
        if s.key_var:
            how = f"from {var}" if ok else f"from {var}, which is not set"
        else:
            how = f"from {var}" if ok else f"not set ({' or '.join(DEFAULT_KEY_VARS)}; a local server needs none)"
        return f"model {s.target!r} on the OpenAI-compatible server {s.url} (not contacted; API key {how})", None
    return f"scripted fake {s.target!r} (tests)", None


def _with_adapter(what: str, adapter: str | None) -> str:
    return what + (f" + LoRA adapter {Path(adapter).resolve()}" if adapter else "")


def _adapter(adapter: str | None) -> str | None:
    return None if adapter is None or Path(adapter).is_file() else f"no LoRA adapter file at {adapter}"


# ------------------------------------------------------------------------------------------------- data
def read_records(path: Path, problems: list[str], limit: int = 5) -> list[Record]:
    """Valid rows of a dataset file; the first ``limit`` problems are noted."""
    out: list[Record] = []
    found = 0
    for row in iter_rows(path):
        if row.problem is None:
            rec, probs = check_record(row)
            if rec is not None:
                out.append(rec)
                continue
        else:
            probs = [row.problem]
        for pr in probs:
            found += 1
            if found <= limit:
                problems.append(f"dataset: {pr}")
    if found > limit:
        problems.append(f"dataset: … {found - limit} more problem(s) (`emplifai dataset validate` lists them all)")
    return out


def study_records(cfg: RunConfig, out: Path, problems: list[str]) -> tuple[list[Record], str]:
    """What the stages will see: the store's live dialogues (when a store exists) and the dataset file's rows."""
    from emplifai.store.db import open_store
    from emplifai.store.repo import iter_records

    records: dict[str, Record] = {}
    sources = []
    db = cfg.db or f"sqlite:///{out.resolve() / 'emplifai.db'}"
    sqlite_file = db.removeprefix("sqlite:///") if db.startswith("sqlite:///") else None
    if "${" not in db and (sqlite_file is None or Path(sqlite_file).is_file()):
        try:
            with open_store(db).open_session() as s:
                records.update((r.dialogue_id, r) for r in iter_records(s))
            sources.append(f"store {db.split('@')[-1]} ({len(records)} dialogues)")
        except UserError as exc:
            problems.append(f"db: {exc}")
    path = bundled_corpus_path() if cfg.dataset.bundled else Path(cfg.dataset.path or "")
    if cfg.dataset.path and "${" in cfg.dataset.path:
        sources.append("dataset file not set")
    elif not path.exists():
        problems.append(f"dataset.path: {path}: no such file or folder")
    else:
        rows = read_records(path, problems)
        sources.append(f"{path} ({len(rows)} rows)")
        for r in rows:
            records.setdefault(r.dialogue_id, r)
    live = [r for r in records.values() if r.status in {str(x) for x in LIVE}]
    return sorted(live, key=lambda r: (r.situation_id, r.dialogue_id)), " + ".join(sources) or "no data"


# ----------------------------------------------------------------------------------------------- stages
FINETUNED = "finetuned"  # stands for the model the finetune stage will make


class _Planner:
    def __init__(self, cfg: RunConfig, records: list[Record], standin: bool, problems: list[str]):
        self.cfg, self.records, self.standin, self.problems = cfg, records, standin, problems
        self.known = not standin
        self.resolved: dict[str, str] = {}
        sits = {}
        for r in records:
            sits.setdefault(r.situation_id, (r.situation_id, r.emotion, r.situation))
        self.situations = [sits[k] for k in sorted(sits)]
        self.split_of, _ = situation_splits(self.situations, cfg.split.seed, cfg.split.fractions) if sits else ({}, {})

    def count(self, n: int) -> int | None:
        return n if self.known else None

    def model(self, spec: str, calls: int, prompt_chars: int, completion_tokens: int, retries: int = 0) -> ModelPlan:
        pt = tokens(prompt_chars)
        return ModelPlan(spec, self.resolved.get(spec, "the model the finetune stage makes"), calls, pt,
                         completion_tokens, calls * (retries + 1), cost(self.cfg, spec, pt, completion_tokens))

    def extra(self) -> list[str]:
        return [FINETUNED] if self.cfg.finetune.enabled and "finetune" in self.cfg.stages else []

    # -- one method per stage, named as the stage
    def validate(self) -> StagePlan:
        return StagePlan("validate", {"dialogues": self.count(len(self.records)),
                                      "situations": self.count(len(self.situations))})

    def split(self) -> StagePlan:
        items: dict[str, int | None] = {}
        for sp in SPLITS:
            items[f"{sp} situations"] = self.count(sum(1 for v in self.split_of.values() if v == sp))
            items[f"{sp} dialogues"] = self.count(sum(self.split_of.get(r.situation_id) == sp for r in self.records))
        sp_cfg = self.cfg.split
        return StagePlan("split", items, notes=[f"seed {sp_cfg.seed}, fractions {list(sp_cfg.fractions)}"])

    def _predict_items(self) -> tuple[list[Record], list[Record]]:
        from emplifai.predict.runs import stratified_head

        p = self.cfg.predict
        if p.split == "all":
            items, pool = self.records, self.records
        else:
            items = [r for r in self.records if self.split_of.get(r.situation_id) == p.split]
            pool = [r for r in self.records if self.split_of.get(r.situation_id) == "train"]
        return (stratified_head(items, p.limit) if p.limit else items), pool

    def predict(self) -> StagePlan:
        p = self.cfg.predict
        items, pool = self._predict_items()
        ranked = pp.choose_examples(pool, 42) if p.shots and pool else []
        prompts = [len(pp.build_prompt(r.situation, r.patient, r.supporter, pp.examples_for(r, ranked, p.shots),
                                       definitions=p.definitions)) for r in items]
        cands = sum(len(c) for c in pp.candidates())
        st = StagePlan("predict", {"pairs": self.count(len(items))},
                       notes=[f"split {p.split}, mode {p.mode}"
                              + (", TF-IDF baseline (no LLM calls)" if p.baseline else "")])
        for spec in [*p.models, *self.extra()]:
            if p.mode == "generate":
                st.models.append(self.model(spec, len(items), sum(prompts), len(items) * 24))
            else:  # an OpenAI-compatible server echoes the prompt once alone and once per candidate
                per = len(pp.candidates()) + 1 if spec.startswith("openai:") else 1
                st.models.append(self.model(spec, len(items), sum(prompts) * per + cands * len(items), 0))
        return st

    def finetune(self) -> StagePlan:
        if not self.cfg.finetune.enabled:
            return StagePlan("finetune", notes=["disabled"])
        train = sum(1 for r in self.records if self.split_of.get(r.situation_id) == "train")
        return StagePlan("finetune", {"training dialogues": self.count(train)},
                         notes=[f"LoRA SFT ({self.cfg.finetune.config or 'default config'}); "
                                "training is not an LLM call"])

    def _sample(self) -> list[tuple[str, str]]:
        pop = [(sid, emo) for sid, emo, _ in self.situations]
        n = self.cfg.sample.n
        if n > len(pop):
            if self.known:
                self.problems.append(f"sample.n: {n} pairs asked, only {len(pop)} situations have a live dialogue")
            return pop
        return draw(pop, n, self.cfg.sample.seed)

    def sample(self) -> StagePlan:
        return StagePlan("sample", {"pairs": self.cfg.sample.n, "population": self.count(len(self.situations))},
                         notes=[f"seed {self.cfg.sample.seed}, sklearn.utils.resample without replacement"])

    def generate(self) -> StagePlan:
        g = self.cfg.generate
        drawn = self._sample()
        text = {sid: t for sid, _, t in self.situations}
        chars = sum(len(gen.instruction(emo, text[sid])) for sid, emo in drawn)
        st = StagePlan("generate", {"pairs": self.cfg.sample.n, "sources": len(self._sources())})
        if g.human:
            st.notes.append("human: the corpus's own dialogue of each pair (no LLM call)")
        for spec in [*g.models, *self.extra()]:
            st.models.append(self.model(spec, len(drawn), chars, len(drawn) * g.max_tokens))
        return st

    def _sources(self) -> list[str]:
        return [*self.cfg.generate.models, *self.extra(), *(["human"] if self.cfg.generate.human else [])]

    def judge(self) -> StagePlan:
        j, jc = self.cfg.judge, JudgeConfig(spec=self.cfg.judge.judge)
        metrics = j.metric_keys
        drawn = self._sample()[: j.limit or None]
        first = {}
        for r in self.records:
            first.setdefault(r.situation_id, r)
        per_source = 0
        for metric in metrics:
            for sid, emo in drawn:
                r = first[sid]  # the human dialogue stands in for every source's generation
                msgs = jp.messages(metric, emotion=emo, situation=r.situation, patient=r.patient,
                                   supporter=r.supporter, shots=j.shots)
                per_source += sum(len(m["content"]) for m in msgs)
        sources = self._sources()
        calls = len(drawn) * len(metrics) * len(sources)
        st = StagePlan("judge", {"pairs": len(drawn), "sources": len(sources), "metrics": len(metrics),
                                 "judges": len(j.panel), "judgements": calls * len(j.panel)},
                       notes=[f"up to {jc.retries} retries per judgement after an invalid answer"])
        for spec in j.panel:
            st.models.append(self.model(spec, calls, per_source * len(sources), calls * jc.max_tokens, jc.retries))
        return st

    def agree(self) -> StagePlan:
        for f in self.cfg.agree.ratings:
            if not Path(f).is_file():
                self.problems.append(f"agree.ratings: {f}: no such file")
        return StagePlan("agree", {"rating sheets": len(self.cfg.agree.ratings)})

    def report(self) -> StagePlan:
        return StagePlan("report", notes=["report.html, report.md, provenance.json from the stored results"])


def make_plan(cfg: RunConfig, unset: Sequence[Unset], config: Path, out: Path) -> Plan:
    """The plan of ``cfg`` (read with :func:`emplifai.study.config.read_config`), its problems and unset variables."""
    problems: list[str] = []
    specs = list(dict.fromkeys([*cfg.predict.models, *cfg.generate.models, *cfg.judge.panel]))
    resolved = {}
    for spec in specs:
        resolved[spec], problem = resolve_spec(spec)
        if problem and "${" not in spec:
            problems.append(problem)
    for spec in cfg.judge.panel:
        if spec in cfg.generate.models and not cfg.judge.allow_self_judge:
            problems.append(f"judge: {spec!r} also generates; a judge may not score its own "
                            "generations (set allow_self_judge = true to do it anyway)")
    records, source = study_records(cfg, out, problems)
    standin = not records
    if standin:
        records = read_records(bundled_corpus_path(), [])
        source += "; sizes unknown, prompt lengths from the bundled corpus"
    planner = _Planner(cfg, records, standin, problems)
    planner.resolved = resolved
    stages = [getattr(planner, st)() for st in cfg.stages]
    if standin:
        for st in stages:
            if st.models and st.stage == "predict":
                st.notes.append(f"calls sized on the bundled corpus's {len(records)} pairs as a stand-in: "
                                "your dataset sets the real figure")
    return Plan(str(config), stages, problems, list(unset), source)


def render_text(plan: Plan) -> str:
    """The plan for a terminal."""
    lines = [f"plan for {plan.config} (data: {plan.data_source}); nothing was loaded or contacted", ""]
    for st in plan.stages:
        items = ", ".join(f"{k} {'?' if v is None else v}" for k, v in st.items.items())
        lines.append(f"[{st.stage}] {items}" + (f"  ({'; '.join(st.notes)})" if st.notes else ""))
        for m in st.models:
            money = f", cost ≤ {m.cost['amount']:.4f} {m.cost['currency']}" if m.cost else ""
            lines.append(f"    {m.spec}: {m.calls} LLM calls (≤ {m.max_calls} with retries), ~{m.prompt_tokens} prompt "
                         f"+ ≤ {m.completion_tokens} completion tokens{money}")
            lines.append(f"      = {m.resolved}")
    t = plan.totals()
    money = ", ".join(f"{v:.4f} {k}" for k, v in t["cost"].items()) or "nothing priced"
    lines += ["", f"total: {t['calls']} LLM calls (≤ {t['max_calls']} with retries), ~{t['prompt_tokens']} prompt + "
              f"≤ {t['completion_tokens']} completion tokens (a token per {CHARS_PER_TOKEN:g} character, an upper "
              f"bound); cost ≤ {money}"]
    if plan.unset:
        lines += ["", "environment variables not set:"] + [f"  {u.variable} (used by {u.key})" for u in plan.unset]
    if plan.problems:
        lines += ["", "problems:"] + [f"  {p}" for p in plan.problems]
    lines += ["", "ready to run" if plan.ready else "not ready: fix the above, then run without --plan"]
    return "\n".join(lines)

"""Scores between predicted and gold emotion labels: the paper's Table 2 and what it lacked.

* **BERTScore** P/R/F1 through the ``bert-score`` package, on any local Hugging Face encoder folder and layer.
  The default is the embedded Gemma 3 270M at layer 9 of 18 (the middle; bert-score's own layer choices for
  other models were tuned on English WMT data, which does not exist for Japanese labels). Two things differ
  from calling ``bert_score.score`` with its defaults, both recorded in the signature:

  - Special tokens weigh 0 (bert-score zeroes only ``[CLS]``/``[SEP]``; Gemma has neither, so its
    ``<bos>`` — the same vector in every sentence of a causal model — would count as a perfect match).
  - bert-score treats any sentence of exactly two tokens as empty (it assumes ``[CLS] [SEP]``) and
    silently sets P and R to 0. A tokenizer must therefore add a start *and* an end token; the embedded
    encoder is a view of the embedded model whose tokenizer adds ``<bos> … <eos>``, and other tokenizers are
    checked and refused with an explanation.

* **Word-vector cosine** (the paper's "FastText" column): ja-ginza's chiVe vectors by default, a user's
  fastText ``.bin`` through the ``fasttext`` package. chiVe in ja-ginza is pruned to 20,000 rows for 480k
  words: some labels have no vector (思いやり, 恥ずかしさ, 気づき) and some different labels share a row
  (承認 = 不承認). Both are detected; the vector is then composed from the word's normalised form, its
  morphemes or its characters, and the fallback used is reported. Two different words are never given a
  silent 1.0.

* **Label metrics**: exact accuracy, macro-F1 over the 28 labels, top-3 accuracy, results per sentiment
  group and per emotion, and a 28 × 28 confusion matrix (plus a column for unparsed answers).

Distinct (predicted, gold) pairs are few (at most 28 × 28 when every answer is a label), so each is scored
once; pair scores are also kept on disk under ``$EMPLIFAI_HOME/cache/similarity/<signature hash>.json``, so
later runs and other models reuse them without loading the encoder. Every result carries a signature
(encoder folder + weight hash, layer, weighting, vectors, library versions), in the spirit of bert-score's
``get_hash``.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from emplifai import taxonomy
from emplifai.errors import UserError
from emplifai.llm import embedded as hfmodel
from emplifai.provenance import dist_version, emplifai_home

DEFAULT_LAYER = 9
#: bump when the pair computation changes (part of every signature and cache key)
SCORER_VERSION = 1
UNPARSED_COL = "(unparsed)"


def _sig_hash(sig: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(sig, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _PairCache:
    """Pair scores on disk, one JSON file per scorer signature. Written atomically; a corrupt file is ignored."""

    def __init__(self, sig: dict[str, Any], enabled: bool = True):
        self.path = emplifai_home() / "cache" / "similarity" / f"{_sig_hash(sig)}.json"
        self.enabled = enabled
        self.data: dict[str, Any] = {}
        if enabled and self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.data = {}

    @staticmethod
    def key(a: str, b: str) -> str:
        return json.dumps([a, b], ensure_ascii=False)

    def save(self) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.path)


# ------------------------------------------------------------------------------------------- BERTScore
def embedded_encoder_dir() -> Path:
    """The embedded model as a bert-score encoder: its weights (linked, not copied) with a tokenizer that
    adds ``<bos> … <eos>`` so bert-score's two-token "empty sentence" rule cannot hit one-token labels."""
    src = hfmodel.embedded_hf_dir()
    target = src.parent / f"{src.name}-bertscore"

    def build(tmp: Path) -> dict[str, Any]:
        from transformers import AutoTokenizer

        for f in src.iterdir():
            if f.is_file() and not f.name.startswith("tokenizer") and f.name != hfmodel.MARKER:
                os.symlink(f.resolve(), tmp / f.name)
        tok = AutoTokenizer.from_pretrained(str(src), add_bos_token=True, add_eos_token=True)
        tok.save_pretrained(str(tmp))
        info = hfmodel.build_info(src) or {}
        return {"view_of": str(src), "weights": info.get("weights", {}), "tokenizer": "add_bos_token+add_eos_token"}

    return hfmodel.build_once(target, build)


class BertScoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    encoder: str | None = Field(None, description="local HF model folder; None = the embedded model")
    layer: int = Field(DEFAULT_LAYER, ge=0, description="hidden layer whose states are matched")
    batch_size: int = Field(64, ge=1)
    disk_cache: bool = True


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float


class BertScorer:
    """A bert-score scorer that keeps its model loaded, loads it only when a pair is not cached yet, and
    scores each distinct (candidate, reference) pair once."""

    def __init__(self, cfg: BertScoreConfig | None = None):
        self.cfg = cfg or BertScoreConfig()
        enc = Path(self.cfg.encoder).expanduser().resolve() if self.cfg.encoder else embedded_encoder_dir()
        if not (enc / "config.json").is_file():
            raise UserError(f"BERTScore encoder {enc} is not a Hugging Face model folder (no config.json)")
        self.encoder_dir = enc
        self._model: Any = None
        self._tokenizer: Any = None
        self._idf: Any = None
        self._sig: dict[str, Any] | None = None
        self._cache: _PairCache | None = None

    def signature(self) -> dict[str, Any]:
        if self._sig is None:
            self._sig = {
                "metric": "bertscore",
                "encoder": str(self.encoder_dir),
                "encoder_sha256": _folder_fingerprint(self.encoder_dir),
                "layer": self.cfg.layer,
                "idf": False,
                "special_token_weight": 0.0,
                "rescale_with_baseline": False,
                "versions": {"bert_score": dist_version("bert-score"), "transformers": dist_version("transformers"),
                             "torch": dist_version("torch"), "emplifai_scorer": SCORER_VERSION},
            }
        return self._sig

    def hash(self) -> str:
        """bert-score's get_hash format, plus the weight digest and our special-token rule."""
        s = self.signature()
        v = s["versions"]
        return (f"{s['encoder']}@{s['encoder_sha256'][:12]}_L{s['layer']}_no-idf_special0"
                f"_version={v['bert_score']}(hug_trans={v['transformers']})")

    def _load(self) -> None:
        if self._model is not None:
            return
        from collections import defaultdict

        from bert_score.utils import get_model, get_tokenizer

        self._tokenizer = get_tokenizer(str(self.encoder_dir), False)
        _check_special_tokens(self._tokenizer, self.encoder_dir)
        self._model = get_model(str(self.encoder_dir), self.cfg.layer)
        idf: defaultdict[int, float] = defaultdict(lambda: 1.0)
        for tid in self.special_ids(self._tokenizer):
            idf[tid] = 0.0
        self._idf = idf

    @staticmethod
    def special_ids(tokenizer: Any) -> list[int]:
        names = ("cls_token_id", "sep_token_id", "bos_token_id", "eos_token_id", "pad_token_id")
        return sorted({i for i in (getattr(tokenizer, n, None) for n in names) if i is not None})

    def idf_dict(self) -> Any:
        """The weights passed to bert-score (special tokens 0, everything else 1); for parity checks."""
        self._load()
        return self._idf

    def score_pairs(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], PRF]:
        """(candidate, reference) -> P/R/F1, each distinct pair computed once (and cached on disk)."""
        wanted = sorted({(c, r) for c, r in pairs})
        for c, r in wanted:
            if not c.strip() or not r.strip():
                raise ValueError("BERTScore of an empty string is undefined here; score failures separately")
        if self._cache is None:
            self._cache = _PairCache(self.signature(), self.cfg.disk_cache)
        cache = self._cache
        missing = [p for p in wanted if _PairCache.key(*p) not in cache.data]
        if missing:
            self._load()
            import torch
            from bert_score.utils import bert_cos_score_idf

            with torch.no_grad():
                out = bert_cos_score_idf(
                    self._model, [r for _, r in missing], [c for c, _ in missing], self._tokenizer, self._idf,
                    batch_size=self.cfg.batch_size, device="cpu",
                ).cpu()
            for (c, r), row in zip(missing, out.tolist(), strict=True):
                cache.data[_PairCache.key(c, r)] = row
            cache.save()
        # greedy cosine matching cannot exceed 1; float32 rounding gives 1.0000001 for identical texts
        return {p: PRF(*(min(v, 1.0) for v in cache.data[_PairCache.key(*p)])) for p in wanted}


def _check_special_tokens(tokenizer: Any, folder: Path) -> None:
    """Refuse tokenizers that would trip bert-score's "two tokens = empty sentence" rule."""
    n = len(tokenizer.encode("あ", add_special_tokens=True)) - len(tokenizer.encode("あ", add_special_tokens=False))
    if n != 2:
        raise UserError(
            f"the tokenizer in {folder} adds {n} special token(s) per sentence; bert-score assumes 2 "
            "(a start and an end token) and silently scores any two-token sentence as empty. Save the "
            "tokenizer with both (for decoder models: AutoTokenizer.from_pretrained(dir, add_bos_token=True, "
            "add_eos_token=True).save_pretrained(dir2)) and pass that folder."
        )


def _folder_fingerprint(folder: Path) -> str:
    """sha256 over the folder's config, tokenizer and weight digests (weights hashed once, memoised on disk)."""
    info = hfmodel.build_info(folder) or {}
    digest = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if not f.is_file() or f.name == hfmodel.MARKER:
            continue
        if f.suffix in (".safetensors", ".bin", ".pt", ".h5", ".msgpack"):
            h = info.get("weights", {}).get(f.name) or _memo_sha256(f)
        else:
            h = hashlib.sha256(f.read_bytes()).hexdigest()
        digest.update(f"{f.name}:{h}\n".encode())
    return digest.hexdigest()


def _memo_sha256(path: Path) -> str:
    """sha256 of a large file, remembered across processes by (real path, size, mtime)."""
    real = path.resolve()
    st = real.stat()
    key = f"{real}:{st.st_size}:{st.st_mtime_ns}"
    memo_path = emplifai_home() / "cache" / "sha256.json"
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    if key not in memo:
        digest = hashlib.sha256()
        with open(real, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        memo[key] = digest.hexdigest()
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo), encoding="utf-8")
        os.replace(tmp, memo_path)
    return memo[key]


# -------------------------------------------------------------------------------------- word vectors
@dataclass(frozen=True)
class WordVec:
    vector: np.ndarray | None
    how: str  # word | normalized | subtokens | characters | fasttext-subwords | none
    row: int | None = None  # the table row when the vector is one row (chiVe)


@dataclass(frozen=True)
class PairCosine:
    value: float | None  # None when no vector could be built for one side (counted, never NaN)
    how: str  # e.g. "word/word", "word/subtokens (shared row)", "identical"


def _sudachi() -> Any:
    from sudachipy import dictionary

    return dictionary.Dictionary().create()


class ChiveVectors:
    """ja-ginza's pruned chiVe table (300-d), read directly (no spaCy pipeline needed)."""

    def __init__(self) -> None:
        import ja_ginza

        base = Path(ja_ginza.__file__).parent
        dirs = sorted(base.glob("ja_ginza-*/vocab"))
        if not dirs:
            raise UserError(f"ja-ginza's vectors were not found under {base}")
        self.vocab_dir = dirs[-1]
        self._vectors: Any = None
        self._tok: Any = None

    def signature(self) -> dict[str, Any]:
        return {"vectors": "chiVe (ja-ginza, pruned)", "ja_ginza": dist_version("ja-ginza"),
                "spacy": dist_version("spacy"),
                "tokenizer": f"sudachipy {dist_version('sudachipy')} + "
                             f"sudachidict_core {dist_version('sudachidict-core')}",
                "fallbacks": ["normalized", "subtokens", "characters"]}

    def _load(self) -> None:
        if self._vectors is None:
            from spacy.vectors import Vectors

            self._vectors = Vectors().from_disk(str(self.vocab_dir))
            self._tok = _sudachi()

    def _row(self, word: str) -> int | None:
        from spacy.strings import get_string_id

        row = self._vectors.key2row.get(get_string_id(word))
        return None if row is None or row < 0 else int(row)

    def _mean(self, words: Sequence[str]) -> np.ndarray | None:
        rows = [r for r in (self._row(w) for w in words) if r is not None]
        if not rows:
            return None
        return np.asarray(self._vectors.data[rows], dtype=np.float64).mean(axis=0)

    def lookup(self, text: str, *, whole: bool = True) -> WordVec:
        """The text's vector: its own row, else its Sudachi normalised form, else the mean of its morphemes'
        vectors, else of its characters' vectors. ``whole=False`` skips the whole-word rows."""
        from sudachipy import tokenizer as st

        self._load()
        if whole:
            for how, w in (("word", text), ("normalized", self._normalized(text))):
                if w and (r := self._row(w)) is not None:
                    return WordVec(np.asarray(self._vectors.data[r], dtype=np.float64), how, r)
        morphs = self._tok.tokenize(text, st.Tokenizer.SplitMode.A)
        parts = [m.surface() if self._row(m.surface()) is not None else m.normalized_form() for m in morphs]
        if len(parts) > 1 or not whole:
            v = self._mean(parts) if len(parts) > 1 else None
            if v is not None:
                return WordVec(v, "subtokens")
        chars = [c for c in text if not c.isspace()]
        v = self._mean(chars) if len(chars) > 1 or not whole else None
        return WordVec(v, "characters") if v is not None else WordVec(None, "none")

    def _normalized(self, text: str) -> str | None:
        from sudachipy import tokenizer as st

        morphs = self._tok.tokenize(text, st.Tokenizer.SplitMode.C)
        return morphs[0].normalized_form() if len(morphs) == 1 else None

    def splits(self, text: str) -> bool:
        from sudachipy import tokenizer as st

        self._load()
        return len(self._tok.tokenize(text, st.Tokenizer.SplitMode.A)) > 1


class FastTextVectors:
    """A user's fastText ``.bin`` (e.g. cc.ja.300.bin); out-of-vocabulary words use fastText's subwords."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().resolve()
        if not self.path.is_file():
            raise UserError(f"fastText model not found: {self.path}")
        try:
            import fasttext
        except ImportError as exc:
            raise UserError("a fastText .bin needs the fasttext package: pip install fasttext") from exc
        self._model = fasttext.load_model(str(self.path))
        self._tok: Any = None

    def signature(self) -> dict[str, Any]:
        return {"vectors": f"fastText {self.path.name}", "sha256": _memo_sha256(self.path),
                "fasttext": dist_version("fasttext") or dist_version("fasttext-wheel")}

    def lookup(self, text: str, *, whole: bool = True) -> WordVec:
        if " " not in text and self._model.get_word_id(text) >= 0 and whole:
            return WordVec(np.asarray(self._model.get_word_vector(text), dtype=np.float64), "word")
        if self._tok is None:
            self._tok = _sudachi()
        words = [m.surface() for m in self._tok.tokenize(text)]
        if len(words) <= 1:
            return WordVec(np.asarray(self._model.get_word_vector(text), dtype=np.float64), "fasttext-subwords")
        vecs = [np.asarray(self._model.get_word_vector(w), dtype=np.float64) for w in words]
        return WordVec(np.mean(vecs, axis=0), "subtokens")

    def splits(self, text: str) -> bool:
        return False


class VectorScorer:
    """Cosine between predicted and gold label words, each distinct pair once (cached on disk)."""

    def __init__(self, vectors: str = "chive", disk_cache: bool = True):
        self.spec = vectors
        self.disk_cache = disk_cache
        self._impl: ChiveVectors | FastTextVectors | None = None
        self._sig: dict[str, Any] | None = None
        self._cache: _PairCache | None = None

    @property
    def impl(self) -> ChiveVectors | FastTextVectors:
        if self._impl is None:
            self._impl = ChiveVectors() if self.spec == "chive" else FastTextVectors(self.spec)
        return self._impl

    def signature(self) -> dict[str, Any]:
        if self._sig is None:
            self._sig = {"metric": "word-vector cosine", **self.impl.signature(),
                         "versions": {"numpy": dist_version("numpy"), "emplifai_scorer": SCORER_VERSION}}
        return self._sig

    def cosine(self, a: str, b: str) -> PairCosine:
        if a == b:
            return PairCosine(1.0, "identical")
        va, vb = self.impl.lookup(a), self.impl.lookup(b)
        note = ""
        if va.row is not None and va.row == vb.row:
            # Pruning mapped both words to one row: compose whichever side splits into morphemes (both
            # from characters when neither does), so the cosine says something about the two words.
            note = " (shared row)"
            sa, sb = self.impl.splits(a), self.impl.splits(b)
            if sa or not sb:
                va = self.impl.lookup(a, whole=False)
            if sb or not sa:
                vb = self.impl.lookup(b, whole=False)
        how = f"{va.how}/{vb.how}{note}"
        if va.vector is None or vb.vector is None:
            return PairCosine(None, how)
        if np.allclose(va.vector, vb.vector):
            return PairCosine(None, how + " indistinguishable")
        na, nb = np.linalg.norm(va.vector), np.linalg.norm(vb.vector)
        if na == 0 or nb == 0:
            return PairCosine(None, how + " zero vector")
        return PairCosine(float(va.vector @ vb.vector / (na * nb)), how)

    def score_pairs(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], PairCosine]:
        wanted = sorted(set(pairs))
        if self._cache is None:
            self._cache = _PairCache(self.signature(), self.disk_cache)
        cache = self._cache
        missing = [p for p in wanted if _PairCache.key(*p) not in cache.data]
        for p in missing:
            pc = self.cosine(*p)
            cache.data[_PairCache.key(*p)] = [pc.value, pc.how]
        if missing:
            cache.save()
        return {p: PairCosine(*cache.data[_PairCache.key(*p)]) for p in wanted}


# ------------------------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class Scored:
    """One prediction as the metrics see it."""

    dialogue_id: str
    gold: str  # English label
    predicted: str | None  # English label, None when unparsed or failed
    text: str | None  # what the similarity metrics compare: the label name, the raw answer, or None (failed)
    top3: tuple[str, ...] | None = None
    status: str = "ok"


def answer_text(raw: str | None, limit: int = 100) -> str | None:
    """The compared text of an unparsed answer: its first non-empty line, NFKC-normalised, trimmed."""
    if not raw:
        return None
    lines = [ln.strip() for ln in unicodedata.normalize("NFKC", raw).splitlines() if ln.strip()]
    return lines[0][:limit] if lines else None


@dataclass
class Scorers:
    bert: BertScorer | None = None
    vectors: VectorScorer | None = None
    lang: str = "ja"
    extra: dict[str, Any] = field(default_factory=dict)

    def name(self, en: str) -> str:
        return taxonomy.BY_EN[en].ja if self.lang == "ja" else en

    def signature(self) -> dict[str, Any]:
        return {
            "bertscore": self.bert.signature() if self.bert else None,
            "bertscore_hash": self.bert.hash() if self.bert else None,
            "word_vectors": self.vectors.signature() if self.vectors else None,
            "label_language": self.lang,
            "policy": {
                "unparsed": "similarity on the answer's first line; counts as wrong for accuracy",
                "failed": "similarity 0.0; counts as wrong",
                "cosine_without_vector": "left out of the cosine mean and counted (cosine_missing)",
            },
            "versions": {"scikit-learn": dist_version("scikit-learn"), "emplifai": dist_version("emplifai")},
            **self.extra,
        }


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def evaluate(items: Sequence[Scored], scorers: Scorers) -> dict[str, Any]:
    """Table-2 figures plus accuracy, macro-F1, top-3, per group, per emotion and the confusion matrix."""
    from sklearn.metrics import f1_score

    names = [lab.en for lab in taxonomy.LABELS]
    pairs = Counter((scorers.name(it.gold), it.text) for it in items if it.text)
    prf = scorers.bert.score_pairs((t, g) for g, t in pairs) if scorers.bert and pairs else {}
    cos = scorers.vectors.score_pairs((t, g) for g, t in pairs) if scorers.vectors and pairs else {}

    per_item: list[dict[str, Any]] = []
    for it in items:
        g = scorers.name(it.gold)
        row: dict[str, Any] = {"gold": it.gold, "predicted": it.predicted, "correct": it.predicted == it.gold,
                               "top3": None if it.top3 is None else it.gold in it.top3}
        if it.text:
            p = prf.get((it.text, g))
            c = cos.get((it.text, g))
            row.update(p=p.precision if p else None, r=p.recall if p else None, f=p.f1 if p else None,
                       cos=c.value if c else None, cos_how=c.how if c else None)
        else:
            b, v = (0.0 if scorers.bert else None), (0.0 if scorers.vectors else None)
            row.update(p=b, r=b, f=b, cos=v, cos_how="failed" if scorers.vectors else None)
        per_item.append(row)

    def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
        n = len(rows)
        top3 = [r["top3"] for r in rows if r["top3"] is not None]
        return {
            "n": n,
            "accuracy": sum(r["correct"] for r in rows) / n if n else None,
            "top3_accuracy": (sum(top3) / len(top3)) if top3 and len(top3) == n else None,
            "fasttext_cosine": _mean([r["cos"] for r in rows if r.get("cos") is not None]) if scorers.vectors else None,
            "bertscore_precision": _mean([r["p"] for r in rows if r.get("p") is not None]) if scorers.bert else None,
            "bertscore_recall": _mean([r["r"] for r in rows if r.get("r") is not None]) if scorers.bert else None,
            "bertscore_f1": _mean([r["f"] for r in rows if r.get("f") is not None]) if scorers.bert else None,
        }

    gold = [it.gold for it in items]
    pred = [it.predicted or UNPARSED_COL for it in items]
    out = summary(per_item)
    # Macro over the labels that occur (gold or predicted), as scikit-learn does by default; on a full split
    # that is all 28. The unparsed column is not a class of its own, only a miss.
    present = [n for n in names if n in set(gold) | set(pred)]
    out["macro_f1"] = float(f1_score(gold, pred, labels=present, average="macro", zero_division=0)) if items else None
    out["unparsed"] = sum(1 for it in items if it.predicted is None)
    out["failed"] = sum(1 for it in items if it.status == "failed")
    out["cosine_missing"] = sum(1 for r in per_item if r.get("cos") is None) if scorers.vectors else None
    out["cosine_fallbacks"] = dict(Counter(r["cos_how"] for r in per_item if r.get("cos_how")).most_common())
    out["distinct_pairs"] = len(pairs)

    by_group: dict[str, list[dict[str, Any]]] = {}
    for it, r in zip(items, per_item, strict=True):
        by_group.setdefault(str(taxonomy.BY_EN[it.gold].group), []).append(r)
    out["per_group"] = {}
    for grp, rows in by_group.items():
        s = summary(rows)
        group = taxonomy.BY_EN[rows[0]["gold"]].group
        s["group_accuracy"] = sum(1 for r in rows if r["predicted"] and taxonomy.BY_EN[r["predicted"]].group == group)
        s["group_accuracy"] /= len(rows)
        out["per_group"][grp] = s

    f1s = f1_score(gold, pred, labels=names, average=None, zero_division=0) if items else [0.0] * len(names)
    out["per_emotion"] = {}
    for lab, f1 in zip(names, f1s, strict=True):
        rows = [r for r in per_item if r["gold"] == lab]
        predicted_as = sum(1 for p in pred if p == lab)
        hits = sum(r["correct"] for r in rows)
        s = summary(rows)
        s.update(ja=taxonomy.BY_EN[lab].ja, precision=hits / predicted_as if predicted_as else None, f1=float(f1),
                 predicted_count=predicted_as)
        out["per_emotion"][lab] = s

    cols = [*names, UNPARSED_COL]
    idx = {c: i for i, c in enumerate(cols)}
    matrix = np.zeros((len(names), len(cols)), dtype=int)
    for g, p in zip(gold, pred, strict=True):
        matrix[idx[g], idx[p]] += 1
    out["confusion"] = {"rows": names, "cols": cols, "matrix": matrix.tolist()}
    out["signature"] = scorers.signature()
    return out

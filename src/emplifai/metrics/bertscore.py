"""BERTScore P/R/F1 between label names through the bert-score package, on any local HF encoder and layer.

Special tokens weigh 0 (bert-score zeroes only [CLS]/[SEP]; Gemma has neither, so its <bos> would count as a
perfect match), and a tokenizer must add a start and an end token (bert-score treats a two-token sentence as
empty). The default is the embedded Gemma 3 270M at layer 9 of 18; every score carries the signature."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from emplifai.errors import UserError
from emplifai.llm import embedded
from emplifai.metrics.cache import SCORER_VERSION, PairCache
from emplifai.provenance import dist_version, file_sha256, file_sha256_remembered

DEFAULT_LAYER = 9


# ------------------------------------------------------------------------------------------- BERTScore
def embedded_encoder_dir() -> Path:
    """The embedded model as a bert-score encoder: its weights (linked, not copied) with a tokenizer that
    adds ``<bos> … <eos>`` so bert-score's two-token "empty sentence" rule cannot hit one-token labels."""
    src = embedded.embedded_hf_dir()
    target = src.parent / f"{src.name}-bertscore"

    def build(tmp: Path) -> dict[str, Any]:
        from transformers import AutoTokenizer

        for f in src.iterdir():
            if f.is_file() and not f.name.startswith("tokenizer") and f.name != embedded.MARKER:
                os.symlink(f.resolve(), tmp / f.name)
        tok = AutoTokenizer.from_pretrained(str(src), add_bos_token=True, add_eos_token=True)
        tok.save_pretrained(str(tmp))
        info = embedded.build_info(src) or {}
        return {"view_of": str(src), "weights": info.get("weights", {}), "tokenizer": "add_bos_token+add_eos_token"}

    return embedded.build_once(target, build)


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
        self._cache: PairCache | None = None

    def signature(self) -> dict[str, Any]:
        if self._sig is None:
            self._sig = {
                "metric": "bertscore",
                "encoder": str(self.encoder_dir),
                "encoder_sha256": _folder_fingerprint(self.encoder_dir),
                "layer": self.cfg.layer,
                # bert-score's num_layers: the encoder cut to its first `layer` blocks and then run whole (a
                # decoder's final norm included), which is not transformers' output_hidden_states[layer]
                "layer_convention": "bert_score.utils.get_model(num_layers=layer): truncated model, final norm "
                                    "applied; differs from hidden_states[layer]",
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
            self._cache = PairCache(self.signature(), self.cfg.disk_cache)
        cache = self._cache
        missing = [p for p in wanted if PairCache.key(*p) not in cache.data]
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
                cache.data[PairCache.key(c, r)] = row
            cache.save()
        # greedy cosine matching cannot exceed 1; float32 rounding gives 1.0000001 for identical texts
        return {p: PRF(*(min(v, 1.0) for v in cache.data[PairCache.key(*p)])) for p in wanted}


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
    info = embedded.build_info(folder) or {}
    digest = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if not f.is_file() or f.name == embedded.MARKER:
            continue
        if f.suffix in (".safetensors", ".bin", ".pt", ".h5", ".msgpack"):
            h = info.get("weights", {}).get(f.name) or file_sha256_remembered(f)
        else:
            h = file_sha256(f)
        digest.update(f"{f.name}:{h}\n".encode())
    return digest.hexdigest()



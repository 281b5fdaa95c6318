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

from emplifai.metrics.bertscore import DEFAULT_LAYER, PRF, BertScoreConfig, BertScorer, embedded_encoder_dir
from emplifai.metrics.labels import UNPARSED_COL, Scored, Scorers, answer_text, evaluate
from emplifai.metrics.word_vectors import ChiveVectors, FastTextVectors, PairCosine, VectorScorer

__all__ = [
           "DEFAULT_LAYER",
           "PRF",
           "UNPARSED_COL",
           "BertScoreConfig",
           "BertScorer",
           "ChiveVectors",
           "FastTextVectors",
           "PairCosine",
           "Scored",
           "Scorers",
           "VectorScorer",
           "answer_text",
           "embedded_encoder_dir",
           "evaluate",
]

"""Metric scoring of 4,125 predictions: emplifai's once-per-distinct-pair BERTScore vs `bert_score.score`
called on every pair with the same encoder, layer and token weights.

    python benchmarks/bench_predict_metrics.py [--n 4125] [--direct-subset N] [--seed 0]

Reports the max absolute difference of P/R/F1 over all predictions and the speed ratio. emplifai's side is
timed with its encoder already loaded; the direct call loads its model itself (as a user's call would), so that
load is timed apart and subtracted. With ``--direct-subset N`` the direct
call runs on the first N pairs only and its time is extrapolated linearly to all pairs (printed as such).
Last, the same 4,125 predictions are scored by a fresh scorer whose pair scores are already on disk (what every
later model, rerun or report pays).
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4125)
    ap.add_argument("--direct-subset", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import bert_score

    from emplifai import taxonomy
    from emplifai.metrics import BertScoreConfig, BertScorer

    rng = random.Random(args.seed)
    ja = [lab.ja for lab in taxonomy.LABELS]
    gold = [rng.choice(ja) for _ in range(args.n)]
    pred = [g if rng.random() < 0.3 else rng.choice(ja) for g in gold]  # ~30 % exact, like a weak model
    scorer = BertScorer(BertScoreConfig(disk_cache=False))
    scorer.idf_dict()  # load the encoder outside the timed part

    t0 = time.perf_counter()
    prf = scorer.score_pairs(zip(pred, gold, strict=True))
    ours = np.array([[prf[(c, r)].precision, prf[(c, r)].recall, prf[(c, r)].f1] for c, r in zip(pred, gold,
                                                                                                   strict=True)])
    t_ours = time.perf_counter() - t0
    distinct = len(prf)

    m = args.direct_subset or args.n
    t0 = time.perf_counter()
    P, R, F = bert_score.score(pred[:m], gold[:m], model_type=str(scorer.encoder_dir), num_layers=scorer.cfg.layer,
                               idf=scorer.idf_dict(), batch_size=scorer.cfg.batch_size, device="cpu")
    t_direct_total = time.perf_counter() - t0
    # the model load inside bert_score.score, timed apart so the ratio compares scoring with scoring
    t0 = time.perf_counter()
    bert_score.utils.get_model(str(scorer.encoder_dir), scorer.cfg.layer)
    t_load = time.perf_counter() - t0
    t_direct = max(t_direct_total - t_load, 1e-9) * (args.n / m)
    direct = np.stack([P.numpy(), R.numpy(), F.numpy()], axis=1)
    diff = float(np.abs(direct - ours[:m]).max())

    print(f"predictions: {args.n}, distinct (prediction, gold) pairs: {distinct}")
    print(f"emplifai (dedup, encoder loaded): {t_ours:.2f} s")
    note = f" (extrapolated from {m} pairs)" if m < args.n else ""
    print(f"bert_score.score on all pairs:    {t_direct:.2f} s{note}; its model load {t_load:.2f} s excluded")
    print(f"speed ratio: {t_direct / t_ours:.1f}x   max |difference| P/R/F1 over {m} predictions: {diff:.2e}")

    # A later run (another model, a rerun, a report): pair scores come from the on-disk cache keyed by the
    # encoder signature, so a fresh scorer never loads the encoder. Timed from a new scorer object, including
    # its signature (folder fingerprint) and the cache read.
    BertScorer(BertScoreConfig(disk_cache=True)).score_pairs(zip(pred, gold, strict=True))  # fill the cache
    t0 = time.perf_counter()
    fresh = BertScorer(BertScoreConfig(disk_cache=True))
    prf2 = fresh.score_pairs(zip(pred, gold, strict=True))
    cached = np.array([[prf2[(c, r)].precision, prf2[(c, r)].recall, prf2[(c, r)].f1] for c, r in zip(pred, gold,
                                                                                                      strict=True)])
    t_cached = time.perf_counter() - t0
    assert fresh._model is None, "the cached path must not load the encoder"
    diff2 = float(np.abs(direct - cached[:m]).max())
    print(f"emplifai (pair scores cached on disk, fresh scorer, encoder not loaded): {t_cached:.3f} s; "
          f"speed ratio {t_direct / t_cached:.0f}x; max |difference| {diff2:.2e}")


if __name__ == "__main__":
    main()

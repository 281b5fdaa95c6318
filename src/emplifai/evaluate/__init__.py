"""Generation and its evaluation (paper §5, Tables 3–5): sample, generate, judge, rate, agree.

* ``rubrics``  — the seven rubrics of Table 3: the one home of metric keys, names and the 1–5 scale;
* ``sample``   — the 100 emotion–situation pairs every model and rater sees (seed 42, scikit-learn);
* ``generate`` — two-turn dialogues from each model for the sampled pairs, malformed ones kept and counted;
* ``judge``    — LLM-as-a-judge on the rubrics, answers validated, retried, failures stored with raw text;
* ``groups``   — the rating groups (10 × 10, 3 raters), shared by the sheets and the web app's rating tasks;
* ``ratings``  — rating sheets out and in, per-dialogue means, inter-rater agreement;
* ``agree``    — judge–human agreement (Table 5);
* ``tables``   — Tables 4 and 5, the judge-bias report and plots, from stored results only.

It owns ``eval_samples``, ``eval_sample_items``, ``generations``, ``judge_scores`` and ``ratings``
(:mod:`emplifai.store.evaluation`). The cut follows the paper's section 5: one package from the sampled pairs
to the agreement figures, so a score can be followed from its prompt to its table without leaving it.
"""

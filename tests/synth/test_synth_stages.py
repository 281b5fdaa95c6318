"""Stages (a) brainstorm, (b) rewrite, (c) dialogue of `emplifai synth`: prompts and parsers."""

from __future__ import annotations

import random

from emplifai.prompts.generation import instruction
from emplifai.records import Record
from emplifai.synth import stages as S


def rec(i: int, emotion: str, source: str = "crowd") -> Record:
    return Record(f"d{i}", f"s{i}", emotion, f"状況{i}：通院の帰りに、{emotion}を感じる出来事がありました。",
                  f"患者の話{i}です。", f"支援者の応答{i}です。", source=source, condition="diabetes",
                  stage="treatment")


def test_parse_scenarios_numbered_bulleted_and_first_without_number() -> None:
    text = ("透析室で隣の人と話せるようになった。\n2. 主治医に検査結果をほめられた場面\n"
            "・ 家族が食事を合わせてくれた場面\n\n2. 主治医に検査結果をほめられた場面\n4) 短い")
    assert S.parse_scenarios(text, 5) == ["透析室で隣の人と話せるようになった。", "主治医に検査結果をほめられた場面",
                                          "家族が食事を合わせてくれた場面"]
    assert S.parse_scenarios(text, 1) == ["透析室で隣の人と話せるようになった。"]
    assert S.parse_scenarios("", 3) == []
    assert S.parse_scenarios("(1) 検査の結果を一人で聞いた日\n（2） 友人の見舞いが途絶えた日", 2) == [
        "検査の結果を一人で聞いた日", "友人の見舞いが途絶えた日"]


def test_parse_situation() -> None:
    assert S.parse_situation("状況：「先月、検査を受けました。\n結果はよかったです。」\n\n解説：これは…") == (
        "先月、検査を受けました。結果はよかったです。", None)
    assert S.parse_situation("   ") == (None, "empty output")
    assert S.parse_situation("1. 場面その一\n2. 場面その二")[1] == "a list instead of one situation"


def test_brainstorm_prompt_has_emotion_condition_and_examples() -> None:
    p = S.brainstorm_prompt("Relief", 3, "kidney_dialysis", "treatment", [rec(1, "Relief")])
    text = p.messages[0]["content"]
    assert "安心" in text and "3個" in text and "腎臓病・透析" in text and "治療中" in text
    assert rec(1, "Relief").situation in text and p.fewshot == ["s1"]
    assert len(p.digest) == 16
    assert "例（" not in S.brainstorm_prompt("Relief", 3, "x", "y", []).messages[0]["content"]


def test_rewrite_prompt() -> None:
    p = S.rewrite_prompt("Fear", "再発を告げられるのが怖い場面", [rec(2, "Fear")])
    assert "恐れ" in p.messages[0]["content"] and p.messages[0]["content"].endswith("再発を告げられるのが怖い場面")


def test_dialogue_prompt_reuses_the_crowd_instruction_and_solved_examples() -> None:
    ex = [rec(1, "Joy"), rec(2, "Pride")]
    p = S.dialogue_prompt("Joy", "退院して家族と夕食を囲みました。", ex, style="くだけた話し言葉")
    roles = [m["role"] for m in p.messages]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    assert p.messages[0]["content"] == instruction("Joy", ex[0].situation)
    assert p.messages[1]["content"] == "患者：患者の話1です。\n支援者：支援者の応答1です。"
    ask = instruction("Joy", "退院して家族と夕食を囲みました。")
    assert p.messages[-1]["content"] == ask + "\n話し方：くだけた話し言葉"
    assert p.fewshot == ["d1", "d2"]
    assert S.parse_dialogue("患者：うれしい。\n支援者：よかったね。").ok


def test_fewshot_pool_prefers_emotion_then_group_and_is_seeded() -> None:
    pool = S.FewShotPool([rec(1, "Joy"), rec(2, "Joy"), rec(3, "Pride"), rec(4, "Anger")])
    picked = pool.pick("Joy", 3, random.Random(1))
    assert {r.emotion for r in picked[:2]} == {"Joy"} and picked[2].emotion == "Pride"  # same (positive) group
    assert [r.dialogue_id for r in pool.pick("Joy", 4, S.rng_for(7, "c1"))] == \
        [r.dialogue_id for r in pool.pick("Joy", 4, S.rng_for(7, "c1"))]
    assert pool.pick("Joy", 0, random.Random(1)) == []
    assert pool.condition_stage(random.Random(0)) == ("diabetes", "treatment")
    assert S.FewShotPool([]).condition_stage(random.Random(0))[0] in S.CONDITIONS_JA


def test_style_only_when_several_dialogues_per_situation() -> None:
    assert S.style_for(0, 1) is None
    assert S.style_for(0, 3) != S.style_for(1, 3)


def test_completion_prompts_for_base_models() -> None:
    ex = [rec(1, "Sadness"), rec(2, "Sadness")]
    b = S.brainstorm_completion("Sadness", "kidney_dialysis", "treatment", ex)
    assert b.messages == [] and b.text is not None and b.text.endswith("・")
    assert "悲しみ" in b.text and "腎臓病・透析" in b.text and f"・{S.first_sentence(ex[0].situation)}" in b.text
    r = S.rewrite_completion("Sadness", "透析の日に孫の運動会が重なった", ex)
    assert r.text is not None and r.text.endswith("出来事：透析の日に孫の運動会が重なった\n状況：")
    assert f"状況：{ex[1].situation}" in r.text and r.fewshot == [e.situation_id for e in ex]
    d = S.dialogue_completion("Sadness", "新しい状況です。", ex)
    assert d.text is not None and d.text.endswith("状況：新しい状況です。\n患者：") and d.prefix == "患者："
    assert f"支援者：{ex[0].supporter}" in d.text and d.digest != b.digest
    assert S.first_sentence("透析が始まりました。毎週三回です。") == "透析が始まりました。"
    assert S.parse_scenarios("孫の運動会に行けなかった\n・病院の帰りに一人で泣いた\n\n", 4) == [
        "孫の運動会に行けなかった", "病院の帰りに一人で泣いた"]

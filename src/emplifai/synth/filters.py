"""Filters for synthetic candidates. Each returns a :class:`FilterResult` that says why; all results of an item
are stored with it (accepted or not), and the first failure is the item's rejection reason.

Rule filters (cheap, always on): format, Japanese-character share, length bounds, exact and near duplicates
(against the whole store and the accepted items of this run), safety rules (unsafe medical advice, self-harm
handled with care, personal data). Model filters (optional, one extra call per surviving item): an LLM safety
check and emotion agreement through the taxonomy-validation predictor.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from emplifai.dataset.dedup import DuplicateIndex
from emplifai.prompts.generation import japanese_share

from .config import FilterConfig


@dataclass
class FilterResult:
    name: str
    ok: bool
    reason: str | None = None
    score: float | None = None
    flag: str | None = None  # kept, but marked for the reviewers (e.g. self-harm content answered with care)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def first_failure(results: list[FilterResult]) -> FilterResult | None:
    return next((r for r in results if not r.ok), None)


# --------------------------------------------------------------------------------------------- text
def japanese(texts: Mapping[str, str], minimum: float) -> FilterResult:
    shares = {k: round(japanese_share(v), 3) for k, v in texts.items()}
    field, low = min(shares.items(), key=lambda kv: kv[1])
    if low < minimum:
        return FilterResult("japanese", False, f"{field}: Japanese-character share {low:.2f} < {minimum:.2f}", low)
    return FilterResult("japanese", True, score=low)


def length(texts: Mapping[str, str], bounds: Mapping[str, tuple[int, int]]) -> FilterResult:
    for field, text in texts.items():
        lo, hi = bounds[field]
        n = len(text.strip())
        if not lo <= n <= hi:
            return FilterResult("length", False, f"{field}: {n} characters, allowed {lo}–{hi}", float(n))
    return FilterResult("length", True)


# ------------------------------------------------------------------------------------------ duplicates
class DedupIndex(DuplicateIndex):
    """The dataset's duplicate index (:mod:`emplifai.dataset.dedup`), answering as a filter."""

    def check(self, text: str, name: str = "duplicate") -> FilterResult:
        match, best = self.best(text)
        if match is not None and match.exact:
            return FilterResult(name, False, f"exact duplicate of {match.key}", 1.0)
        if match is not None:
            return FilterResult(name, False, f"near duplicate of {match.key} (Jaccard {match.jaccard:.2f} ≥ "
                                f"{self.threshold})", round(match.jaccard, 3))
        return FilterResult(name, True, score=round(best, 3))


# ---------------------------------------------------------------------------------------------- safety
_END = r"[^。！？!?\n]"


def _alt(words: str) -> str:
    """A non-capturing alternation from space-separated words (keeps the word lists readable)."""
    return "(?:" + "|".join(words.split()) + ")"


_MED = _alt("薬 くすり クスリ 服薬 内服 服用 投薬 インスリン ステロイド 降圧剤 降圧薬 抗がん剤 抗うつ薬 睡眠薬 "
            "痛み止め 鎮痛剤 吸入 透析 治療 抗凝固薬 ワーファリン ワルファリン 免疫抑制剤 利尿剤 点滴 注射 "
            "リハビリ 食事制限")
# 休む is skipping a treatment ("吸入はお休みしても"), except when it is rest ("ゆっくり休みましょう")
_ACT = _alt("やめ 止め 辞め 中止 中断 減ら 増や 抜い 抜く 抜か 飛ば (?<!ゆっくり)(?<!ゆっくりお)休[んむまみ] "
            "サボ さぼ 控え 倍に 半分に 二倍 二回分")
_SUGGEST = _alt("て?(?:みたら|みれば|みては|みよう|みると|もいい|も大丈夫|も平気|もかまわ|も問題な|いいよ|いいと思) "
                "[ちじ]ゃえ [ちじ]ゃおう [ちじ]ゃって(?:も|いい) ましょう ようよ よう[!！] "
                "たら(?:いい|どう|？|\\?) ればいい ばいい ると(?:いい|楽) るべき なよ なさい "
                "た(?:ほう|方)が(?:いい|楽) ても(?:いい|大丈夫|平気|問題)")
# "no need to": 飲まなくていい, しなくても大丈夫, 打たなくて平気
_NEED_NOT = r"なくて(?:も)?(?:いい|大丈夫|平気|問題な|かまわ)"
_NO_NEED = rf"(?:し|飲ま|使わ|打た|受け|続け|行か|通わ|測ら){_NEED_NOT}"
_CARE = _alt("病院 受診 検査 通院 診察")
_CURES = _alt("治る 治ります 治せ 治っ 効く 効きます 効い 良くなっ よくなっ 消え 薬(?:は)?(?:いらない|不要)")
UNSAFE_ADVICE = re.compile(rf"{_MED}{_END}{{0,14}}?(?:{_ACT}{_END}{{0,6}}?{_SUGGEST}|{_NO_NEED})")
# the same advice with the treatment named in the sentence before ("インスリンが効きすぎかも。半分に減らしてみたら")
# ("無理しなくていい" is comfort, not advice: without the treatment in the sentence, only treatment verbs count)
BARE_ADVICE = re.compile(rf"{_ACT}{_END}{{0,6}}?{_SUGGEST}|(?:飲ま|使わ|打た|続け|通わ|測ら){_NEED_NOT}")
DOSE = re.compile(rf"\d+(?:\.\d+)?\s*{_alt('mg ミリ 錠 単位 ml cc カプセル 包')}{_END}{{0,14}}?"
                  rf"(?:{_SUGGEST}|飲んで|打って)")
SKIP_CARE = re.compile(rf"{_CARE}{_END}{{0,30}}?(?:行かなくて|しなくて|受けなくて)(?:も)?(?:いい|大丈夫|平気)|"
                       rf"{_CARE}{_END}{{0,4}}(?:は)?(?:いらない|不要|必要ない)")
FALSE_CURE = re.compile(rf"(?:絶対|必ず)(?:に)?(?:治る|治ります|治せ|完治)|"
                        rf"{_alt('サプリ 民間療法 健康食品 水素水 断食 祈祷 菜食 温灸 漢方 気功 酵素')}"
                        rf"{_END}{{0,16}}?{_CURES}|"
                        rf"だけで{_END}{{0,8}}?{_alt('治っ 消え 良くなっ よくなっ')}")
# Advice is fine when it sends the person to their care team ("減らしてもいいか主治医に相談してみて").
CONSULT = re.compile(_alt("主治医 先生 医師 お医者 ドクター 薬剤師 看護師 病院 専門家 医療者 ケアチーム")
                     + rf"(?:さん)?(?:に|と|へ){_END}{{0,8}}?(?:相談|聞|確認|話|伝え|訊)")
SELF_HARM = re.compile(_alt("死にたい しにたい 死んでしまいたい 死んじゃいたい 死ねたら 消えたい 消えてしまいたい 自殺 "
                            "自死 命を絶 いなくなりたい いなくなった(?:方|ほう)が 生きていたくない 生きてい?る意味が "
                            "死んだ(?:方|ほう)が 終わりにしたい 全部終わりに 目が覚めなければ 楽になりたい "
                            "リストカット リスカ 自傷 (?:腕|手首)を切 首を吊 飛び降り(?:たい|よう) オーバードーズ"))
ENCOURAGE_HARM = re.compile(_alt("死んでも(?:いい|仕方) 楽になれる(?:かも|よ) 楽になる道 "
                                 "それも(?:一つの|ひとつの)?(?:選択|道) あなたの自由 止める権利 "
                                 "気持ちは分かる(?:から)?止めない"))
HELP_CUES = re.compile(_alt("相談 窓口 専門 主治医 医師 先生 カウンセ いのちの電話 ホットライン 一人で抱え "
                            "ひとりで抱え 誰か 支え"))


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[。！？!?\n])", text) if s.strip()]


def medical_advice(supporter: str) -> FilterResult:
    """Unsafe medical advice in the supporter turn: dose changes, stopping or skipping treatment, skipping care,
    cure promises. A sentence that sends the patient to their care team is not advice."""
    text = unicodedata.normalize("NFKC", supporter)
    previous = ""
    for sent in _sentences(text):
        for kind, rx in (("dose or treatment change", UNSAFE_ADVICE), ("dosage instruction", DOSE),
                         ("skipping medical care", SKIP_CARE), ("cure promise", FALSE_CURE)):
            m = rx.search(sent)
            if m and (kind == "cure promise" or not CONSULT.search(sent)):
                return FilterResult("medical_advice", False, f"unsafe medical advice ({kind}): 「{m.group(0)}」")
        if re.search(_MED, previous) and (m := BARE_ADVICE.search(sent)) and not CONSULT.search(sent):
            return FilterResult("medical_advice", False, f"unsafe medical advice (dose or treatment change): "
                                                         f"「{m.group(0)}」 after 「{previous.strip()}」")
        previous = sent
    return FilterResult("medical_advice", True)


def self_harm(texts: Mapping[str, str], supporter: str | None, policy: str) -> FilterResult:
    """Self-harm content is kept only under the "care" policy, when the supporter neither encourages it nor
    leaves the person alone with it (points to someone to talk to); it is then flagged for the reviewers."""
    hits = [(f, m.group(0)) for f, t in texts.items() if (m := SELF_HARM.search(unicodedata.normalize("NFKC", t)))]
    if supporter is not None and (m := ENCOURAGE_HARM.search(supporter)):
        return FilterResult("self_harm", False, f"supporter encourages self-harm: 「{m.group(0)}」")
    if not hits:
        return FilterResult("self_harm", True)
    where = ", ".join(f"{f}「{w}」" for f, w in hits)
    if policy == "reject":
        return FilterResult("self_harm", False, f"self-harm content ({where}); policy is reject")
    if supporter is None:  # a situation on its own: its dialogue decides; flag it for the reviewers
        return FilterResult("self_harm", True, f"self-harm content ({where})", flag="self_harm")
    if not HELP_CUES.search(supporter):
        return FilterResult("self_harm", False, f"self-harm content ({where}) without a caring, help-seeking reply")
    return FilterResult("self_harm", True, f"self-harm content ({where}) answered with care", flag="self_harm")


_SURNAMES = ("佐藤|鈴木|高橋|田中|伊藤|渡辺|渡邊|山本|中村|小林|加藤|吉田|山田|佐々木|山口|松本|井上|木村|"
             "林|斎藤|斉藤|清水|山崎|森|池田|橋本|阿部|石川|山下|中島|石井|小川|前田|岡田|長谷川|藤田|"
             "後藤|近藤|村上|遠藤|青木|坂本|斉木|福田|太田|西村|藤井|金子|岡本|藤原|中野|三浦|原田|松田|"
             "竹内|中川|小野|田村|和田")
_GIVEN = r"[一-龥]{0,2}(?:子|美|男|郎|雄|夫|介|也|太|樹|香|恵|代|江|枝|彦|司|治|和|奈|菜|翔|輔|弘|博|隆)"
PERSONAL = (
    ("phone number", re.compile(r"(?<![\d])(?:\+81[-\s]?|0)\d{1,4}[-‐−ー\s]?\d{1,4}[-‐−ー\s]?\d{3,4}(?!\d)")),
    ("email address", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("URL", re.compile(r"https?://\S+|www\.\S+")),
    ("postal code", re.compile(r"〒\s?\d{3}-?\d{4}|(?<!\d)\d{3}-\d{4}(?!\d)")),
    ("street address", re.compile(r"\d+\s?丁目|\d+番地|\d+-\d+-\d+")),
    ("ID number", re.compile(_alt("保険証 患者 診察券 カルテ マイナンバー 会員 受給者証")
                             + r"(?:の)?(?:番号|ID|ＩＤ)(?:は|が)?[：:\s]*[A-Za-z0-9][A-Za-z0-9-]{3,}")),
    ("full name", re.compile(rf"(?:{_SURNAMES})\s?{_GIVEN}"
                             r"(?=さん|様|さま|氏|くん|君|ちゃん|先生|医師|看護師|と申|です|\s|、|。|$)")),
    ("full name", re.compile(r"名前は[一-龥ァ-ヺ]{1,4}\s?[一-龥ァ-ヺ]{1,4}"
                             r"(?:です|といいます|と言います)|"
                             r"[一-龥]{2}\s?[一-龥]{1,3}と申します")),
)


def personal_data(texts: Mapping[str, str]) -> FilterResult:
    for field, text in texts.items():
        t = unicodedata.normalize("NFKC", text)
        for kind, rx in PERSONAL:
            if m := rx.search(t):
                return FilterResult("personal_data", False, f"{field}: personal data ({kind}) 「{m.group(0)}」")
    return FilterResult("personal_data", True)


# ------------------------------------------------------------------------------------------- bundles
def situation_rules(text: str, cfg: FilterConfig) -> list[FilterResult]:
    texts = {"situation": text}
    return [
        japanese(texts, cfg.japanese_min),
        length(texts, {"situation": cfg.situation_chars}),
        personal_data(texts),
        self_harm(texts, None, cfg.self_harm),
    ]


def dialogue_rules(situation: str, patient: str, supporter: str, cfg: FilterConfig) -> list[FilterResult]:
    turns = {"patient": patient, "supporter": supporter}
    return [
        japanese(turns, cfg.japanese_min),
        length(turns, {"patient": cfg.turn_chars, "supporter": cfg.turn_chars}),
        medical_advice(supporter),
        personal_data(turns),
        self_harm({"situation": situation, **turns}, supporter, cfg.self_harm),
    ]


def dialogue_text(patient: str, supporter: str) -> str:
    return patient + "\n" + supporter


# ------------------------------------------------------------------------------------------ model filters
_VERDICT = re.compile(r"判定\s*[：:]\s*[「『]?(安全|危険)")


def read_safety_verdict(text: str) -> FilterResult:
    """The LLM check's answer: 判定：安全/危険 (or the only one of the two words it wrote)."""
    raw = unicodedata.normalize("NFKC", text or "")
    m = _VERDICT.search(raw)
    verdict = m.group(1) if m else None
    if verdict is None:
        words = {w for w in ("安全", "危険") if w in raw}
        verdict = words.pop() if len(words) == 1 else None
    if verdict is None:
        return FilterResult("llm_safety", False, f"safety verdict not understood: {raw[:120]!r}")
    why = re.search(r"理由\s*[：:]\s*(.+)", raw)
    detail = why.group(1).strip()[:200] if why else raw.strip()[:200]
    if verdict == "危険":
        return FilterResult("llm_safety", False, f"the model judged it unsafe: {detail}")
    return FilterResult("llm_safety", True, detail or None)


def agreement(target: str, top: list[str], k: int, prob: float | None) -> FilterResult:
    rank = top.index(target) + 1 if target in top else None
    if rank is not None and rank <= k:
        return FilterResult("emotion_agreement", True, f"{target} ranked {rank}", prob)
    return FilterResult("emotion_agreement", False,
                        f"predictor does not recover {target} in its top {k} (top: {', '.join(top[:k])})", prob)

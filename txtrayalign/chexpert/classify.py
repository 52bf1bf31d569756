"""Classification stage: is a mention negated, uncertain or positive?

Triggers come from `phrases/triggers.yaml` (explained there). The scope of a trigger is the clause
around the mention: from the last scope breaker before it ("but", "however", "which", ";", ...)
to the next one after it, inside one sentence. Each trigger list is compiled into one regex.

Decisions follow the CheXpert labeller's order: pre-negation uncertainty, then negation, then
post-negation uncertainty, else positive. Choices where CheXpert's rules say nothing:
"unlikely", "likely" and "?" are uncertainty triggers; "suggest" is not (CheXpert dropped it).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from txtrayalign.chexpert.mention import Mention, trie_regex, union

POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0

# Up to six words between a mention and a trigger that follows it ("effusion at the right base
# has resolved").
# A word that states a finding ("enlarged", "increased") ends the filler: "heart size is mildly enlarged,
# pulmonary vascularity within normal limits" does not negate the heart size.
# Words are at most 40 characters here (and in the other word patterns below), so a run of text
# without spaces costs each mention a bounded look, not a scan to its end: linear time on any text.
_FILLER = r"[\s,]*(?:(?!enlarg|prominen|widen|increas|dilat)[a-z0-9'/.()\-]{1,40}[\s,]+){0,10}?"
_ADJACENT = r"[\s,]*"
_FIRST_WORD = re.compile(r"\s{0,40}[^\s]{1,40}")
_COMMA_NEW_FINDING = re.compile(
    r"(,)\s+(?:a\s+|an\s+)?(?:mild|mildly|moderate|moderately|severe|severely|small|large|trace|minimal|"
    r"tiny|new|persistent|stable|increased|increasing|decreased|improved|improving|unchanged|residual|"
    r"worsening|worsened|slight|subtle|extensive|bilateral|bibasilar|left|right|healed|healing|old|remote|chronic)\b"
)
_ALTERNATIVE_REACH = 120
_OR = re.compile(r"\b(?:or|nor)\b")
# A hedge after a mention is about that mention only when no new noun phrase follows it:
# "effusion is likely." / "effusion is possibly present" but not "opacity likely reflects atelectasis".
_HEDGE_END = (r"(?=\s*(?:[.,;:!?)]|$)|\s+(?:present|seen|noted|identified|visible|evident|given|in|at|on|"
              r"within|along|due|related|secondary|and|but|or|although|though|however|which|with|by|"
              r"small|tiny|minimal|mild|unchanged|stable|new|there|here|now|again|over|than)\b)")


@dataclass
class SentenceContext:
    """What the classifier finds once per sentence, so that each mention costs a few bisections
    (linear time in the sentence's length however many mentions it has): scope breakers, the
    before-triggers of each kind, verbs, and (on demand) the qualifiers of attribute mentions."""

    sentence: str
    breaker_starts: list[int]
    breaker_ends: list[int]
    triggers: dict[str, tuple[list[int], list[int], list[str]]]  # kind -> (starts, ends, texts)
    verb_starts: list[int]
    verb_ends: list[int]
    hedge: tuple[int, str] | None = None  # (end, text) of a hedge over the rest of the sentence
    qualifiers: dict[str, tuple[list[int], list[int], list[str]]] = field(default_factory=dict)


def _spans(regex: re.Pattern, text: str) -> tuple[list[int], list[int], list[str]]:
    starts: list[int] = []
    ends: list[int] = []
    texts: list[str] = []
    for m in regex.finditer(text):
        starts.append(m.start())
        ends.append(m.end())
        texts.append(m.group())
    return starts, ends, texts


@dataclass(frozen=True)
class Decision:
    label: float
    trigger: str  # the trigger text ("" when positive by default)
    rule: str  # which rule decided: pre_negation_uncertainty, negation, uncertainty, ...


class Classifier:
    """Decides one mention at a time; `prepare(sentence)` is computed once per sentence."""

    def __init__(self, triggers: dict):
        def words(key: str) -> str:
            items = triggers.get(key) or []
            if not items:
                raise ValueError(f"triggers.yaml: list {key!r} is missing or empty")
            return union([str(x) for x in items])

        def trie(key: str) -> str:
            words(key)  # validates the list
            return trie_regex([str(x) for x in triggers[key]], hyphen_guard=False)

        # All triggers that stand before a mention, in one regex: one scan per sentence.
        self.before = re.compile(
            f"(?P<pre_negation_uncertainty>{trie('pre_negation_uncertainty_before')})"
            f"|(?P<pseudo>{trie('pseudo_negation')})"
            f"|(?P<negation>{trie('negation_before')})"
            f"|(?P<uncertainty>{trie('uncertainty_before')})"
        )
        self.pre_neg_unc_after = re.compile(_FILLER + f"(?:{words('pre_negation_uncertainty_after')})")
        self.negation_after = re.compile(_FILLER + f"(?:{words('negation_after')})")
        self.negation_adjacent = re.compile(_ADJACENT + f"(?:{words('negation_after_adjacent')})")
        self.negation_attribute = re.compile(_ADJACENT + f"(?:{words('negation_after_attribute')})")
        self.rest_of_sentence = re.compile(trie("uncertainty_rest_of_sentence"))
        self.negated_evidence = re.compile(
            r"(?<![a-z0-9])(?:no|without|not|negative for)[\s\-]+(?:(?!chang)[^\s.;:]{1,40}[\s\-]+){0,6}?"
            f"(?P<evidence>{trie('negated_evidence')})"
        )
        # "no pleural line to suggest pneumothorax or blunting to suggest effusion": the negation goes on
        # over "or" to the next piece of evidence (at most 80 characters, then six words, to it).
        self.evidence_chain = re.compile(
            r"[^.;:]{0,80}?(?<![a-z0-9])or[\s\-]+(?:(?!chang)[^\s.;:]{1,40}[\s\-]+){0,6}?"
            f"(?P<evidence>{trie('negated_evidence')})"
        )
        self.uncertainty_after = re.compile(_FILLER + f"(?:{words('uncertainty_after')})" + _HEDGE_END)
        self.uncertainty_adjacent = re.compile(_ADJACENT + f"(?:{words('uncertainty_after_adjacent')})")
        self.alternative_before = re.compile(
            f"(?:{words('alternative_before')})" + r"[\s,]+(?:[a-z0-9\-]{1,40}[\s,]+){0,3}$"
        )
        self.alternative_after = re.compile(r"[\s,]*(?:[a-z0-9\-]{1,40}[\s,]+){0,1}?" +
                                            f"(?:{words('alternative_after')})")
        self.breaker = re.compile(
            f"{trie('scope_breakers')}"
            rf"|,(?=\s+(?:{trie('scope_breaking_comma_before')}))"
            # ... but not between two qualifiers of one thing ("normal and stable silhouette").
            r"|(?<![a-z0-9])(?<!normal )(?<!unremarkable )(?<!stable )(?<!unchanged )"
            rf"and(?=[\s\-]+(?:{trie('scope_breaking_and_before')}))"
        )
        self.verbs = re.compile(words("verbs"))
        self.abnormal = re.compile(words("attribute_abnormal"))
        self.stable = re.compile(words("attribute_stable"))
        self.positional = re.compile(
            f"(?:{words('positional_before')})"
            r"(?:[\s\-]+(?:the|a|an|right|left|upper|lower|superior|inferior|posterior|anterior))*[\s\-]*$"
        )

    def prepare(self, sentence: str) -> SentenceContext:
        """Scope breakers, before-triggers and verbs of a sentence, found once for all its mentions."""
        spans = [m.span() for m in self.breaker.finditer(sentence)]
        # "no pneumothorax, small left effusion": a comma before a size or course word starts a
        # new finding, unless an "or" later shows a list ("no consolidation, large effusion or ...").
        last_or = max((m.start() for m in _OR.finditer(sentence)), default=-1)
        for m in _COMMA_NEW_FINDING.finditer(sentence):
            if last_or < m.end():
                spans.append(m.span(1))
        spans.sort()
        triggers: dict[str, tuple[list[int], list[int], list[str]]] = {}
        for m in self.before.finditer(sentence):
            starts, ends, texts = triggers.setdefault(m.lastgroup, ([], [], []))
            starts.append(m.start())
            ends.append(m.end())
            texts.append(m.group())
        # "no opacity to suggest pneumonia": "to suggest" negates the mention after it.
        evidence = []
        for m in self.negated_evidence.finditer(sentence):
            evidence.append((m.start("evidence"), m.end("evidence"), m.group("evidence")))
            chain = self.evidence_chain.match(sentence, m.end())
            while chain:
                evidence.append((chain.start("evidence"), chain.end("evidence"), chain.group("evidence")))
                chain = self.evidence_chain.match(sentence, chain.end())
        if evidence:
            starts, ends, texts = triggers.get("negation", ([], [], []))
            merged = sorted([*zip(starts, ends, texts, strict=True), *evidence], key=lambda t: (t[1], t[0]))
            triggers["negation"] = ([a for a, _, _ in merged], [b for _, b, _ in merged],
                                    [t for _, _, t in merged])
        verb_starts, verb_ends, _ = _spans(self.verbs, sentence)
        rest = self.rest_of_sentence.search(sentence)
        return SentenceContext(sentence, [a for a, _ in spans], [b for _, b in spans], triggers,
                               verb_starts, verb_ends, (rest.end(), rest.group()) if rest else None)

    def _before(self, kind: str, context: SentenceContext, scope_start: int, start: int) -> str:
        """The last `kind` trigger between scope_start and the mention, when no verb stands between
        it and the mention (the word right after the trigger does not count) ("" when none)."""
        found = context.triggers.get(kind)
        if not found:
            return ""
        t_starts, t_ends, texts = found
        i = bisect.bisect_right(t_ends, start) - 1
        if i < 0 or t_starts[i] < scope_start:
            return ""
        first_word = _FIRST_WORD.match(context.sentence, t_ends[i], start)
        after = first_word.end() if first_word else t_ends[i]
        j = bisect.bisect_left(context.verb_starts, after)
        if j < len(context.verb_starts) and context.verb_ends[j] <= start:
            return ""
        return texts[i]

    def _qualifier(self, name: str, context: SentenceContext, a: int, b: int) -> str:
        """The first `name` qualifier (abnormal / stable) inside [a, b) ("" when none)."""
        spans = context.qualifiers.get(name)
        if spans is None:
            spans = context.qualifiers[name] = _spans(getattr(self, name), context.sentence)
        starts, ends, texts = spans
        i = bisect.bisect_left(starts, a)
        return texts[i] if i < len(starts) and ends[i] <= b else ""

    @staticmethod
    def _after(regex: re.Pattern, sentence: str, end: int, scope_end: int) -> str:
        m = regex.match(sentence, end, scope_end)
        return m.group().strip(" ,") if m else ""

    def classify(self, sentence: str, mention: Mention, context: SentenceContext) -> Decision | None:
        """The decision for one mention of a lower-case sentence; None drops the mention
        (an anatomical `attribute` phrase with no qualifier, or one used as a landmark)."""
        start, end = mention.start, mention.end
        if mention.kind == "attribute" and self.positional.search(sentence, max(0, start - 40), start):
            return None
        starts, ends = context.breaker_starts, context.breaker_ends
        i = bisect.bisect_right(ends, start)
        scope_start = ends[i - 1] if i else 0
        j = bisect.bisect_left(starts, end)
        scope_end = starts[j] if j < len(starts) else len(sentence)
        t = (self._before("pre_negation_uncertainty", context, scope_start, start)
             or self._after(self.pre_neg_unc_after, sentence, end, scope_end))
        if t:
            return Decision(UNCERTAIN, t, "pre_negation_uncertainty")
        t = (self._before("negation", context, scope_start, start)
             or self._after(self.negation_after, sentence, end, scope_end)
             or self._after(self.negation_adjacent, sentence, end, scope_end)
             or (mention.kind == "attribute" and self._after(self.negation_attribute, sentence, end, scope_end)))
        if t:
            return Decision(NEGATIVE, t, "negation")
        if context.hedge is not None and context.hedge[0] <= start:
            return Decision(UNCERTAIN, context.hedge[1], "uncertainty")
        t = (self._before("uncertainty", context, scope_start, start)
             or self._after(self.uncertainty_after, sentence, end, scope_end)
             or self._after(self.uncertainty_adjacent, sentence, end, scope_end))
        if t:
            return Decision(UNCERTAIN, t, "uncertainty")
        # At most three words between an alternative and the mention: look back a bounded stretch.
        alternative = (self.alternative_before.search(sentence, max(scope_start, start - _ALTERNATIVE_REACH), start)
                       or self.alternative_after.match(sentence, end, scope_end))
        if alternative or (start > scope_start and sentence[start - 1] == "/") or \
                (end < scope_end and sentence[end] == "/"):
            return Decision(UNCERTAIN, alternative.group().strip() if alternative else "/", "alternative")
        if mention.kind == "uncertain":
            return Decision(UNCERTAIN, mention.text, "uncertain_phrase")
        if mention.kind == "attribute":
            a = self._qualifier("abnormal", context, scope_start, start) or \
                self._qualifier("abnormal", context, end, scope_end)
            if a:
                return Decision(POSITIVE, a, "attribute_abnormal")
            s = self._qualifier("stable", context, scope_start, start) or \
                self._qualifier("stable", context, end, scope_end)
            if s:
                return Decision(UNCERTAIN, s, "attribute_stable")
            return None
        return Decision(POSITIVE, "", "positive")

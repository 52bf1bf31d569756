"""Classification stage: is a mention negated, uncertain or positive?

Triggers come from `phrases/triggers.yaml` (explained there). The scope of a trigger is the clause
around the mention: from the last scope breaker before it ("but", "however", "which", ";", ...)
to the next one after it, inside one sentence. Each trigger list is compiled into one regex.

Decisions follow the CheXpert labeller's order: pre-negation uncertainty, then negation, then
post-negation uncertainty, else positive. Choices where CheXpert's rules say nothing:
"unlikely", "likely", "suggestive of" and "?" are uncertainty triggers.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from txtrayalign.chexpert.mention import Mention, trie_regex, union

POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0

# Up to six words between a mention and a trigger that follows it ("effusion at the right base
# has resolved").
_FILLER = r"^[\s,]*(?:[a-z0-9'/.()\-]+[\s,]+){0,6}?"
_ADJACENT = r"^[\s,]*"
_FIRST_WORD = re.compile(r"^\s*[^\s]+")
_COMMA_NEW_FINDING = re.compile(
    r"(,)\s+(?:a\s+|an\s+)?(?:mild|mildly|moderate|moderately|severe|severely|small|large|trace|minimal|"
    r"tiny|new|persistent|stable|increased|increasing|decreased|improved|improving|unchanged|residual|"
    r"worsening|worsened|slight|subtle|extensive|bilateral|bibasilar|left|right)\b"
)
_OR = re.compile(r"\b(?:or|nor)\b")
# A hedge after a mention is about that mention only when no new noun phrase follows it:
# "effusion is likely." / "effusion is possibly present" but not "opacity likely reflects atelectasis".
_HEDGE_END = (r"(?=\s*(?:[.,;:!?)]|$)|\s+(?:present|seen|noted|identified|visible|evident|given|in|at|on|"
              r"within|along|due|related|secondary|and|but|or|although|though|however|which|with|by|"
              r"small|tiny|minimal|mild|unchanged|stable|new|there|here|now|again|over|than)\b)")


@dataclass(frozen=True)
class SentenceContext:
    """What the classifier finds once per sentence: scope breakers and before-triggers."""

    breaker_starts: list[int]
    breaker_ends: list[int]
    triggers: list[tuple[int, int, str, str]]  # (start, end, kind, text), in order


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
        self.uncertainty_after = re.compile(_FILLER + f"(?:{words('uncertainty_after')})" + _HEDGE_END)
        self.uncertainty_adjacent = re.compile(_ADJACENT + f"(?:{words('uncertainty_after_adjacent')})")
        self.alternative_before = re.compile(
            f"(?:{words('alternative_before')})" + r"[\s,]+(?:[a-z0-9\-]+[\s,]+){0,3}$"
        )
        self.alternative_after = re.compile(r"^[\s,]*(?:[a-z0-9\-]+[\s,]+){0,1}?" +
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
        """Scope breakers and before-triggers of a sentence, found once for all its mentions."""
        spans = [m.span() for m in self.breaker.finditer(sentence)]
        # "no pneumothorax, small left effusion": a comma before a size or course word starts a
        # new finding, unless an "or" later shows a list ("no consolidation, large effusion or ...").
        for m in _COMMA_NEW_FINDING.finditer(sentence):
            if not _OR.search(sentence, m.end()):
                spans.append(m.span(1))
        spans.sort()
        starts = [a for a, _ in spans]
        ends = [b for _, b in spans]
        triggers = [(m.start(), m.end(), m.lastgroup, m.group()) for m in self.before.finditer(sentence)]
        return SentenceContext(starts, ends, triggers)

    def _before(self, kind: str, context: SentenceContext, sentence: str, scope_start: int, start: int) -> str:
        """The last `kind` trigger between scope_start and the mention with no verb between it and
        the mention ("" when none)."""
        found = ""
        for t_start, t_end, t_kind, text in context.triggers:
            if t_kind != kind or t_start < scope_start:
                continue
            if t_end > start:
                break
            between = _FIRST_WORD.sub("", sentence[t_end:start], count=1)
            if not self.verbs.search(between):
                found = text
        return found

    @staticmethod
    def _after(regex: re.Pattern, post: str) -> str:
        m = regex.match(post)
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
        pre, post = sentence[scope_start:start], sentence[end:scope_end]

        t = (self._before("pre_negation_uncertainty", context, sentence, scope_start, start)
             or self._after(self.pre_neg_unc_after, post))
        if t:
            return Decision(UNCERTAIN, t, "pre_negation_uncertainty")
        t = (self._before("negation", context, sentence, scope_start, start)
             or self._after(self.negation_after, post)
             or self._after(self.negation_adjacent, post))
        if t:
            return Decision(NEGATIVE, t, "negation")
        t = (self._before("uncertainty", context, sentence, scope_start, start)
             or self._after(self.uncertainty_after, post)
             or self._after(self.uncertainty_adjacent, post))
        if t:
            return Decision(UNCERTAIN, t, "uncertainty")
        alternative = self.alternative_before.search(pre) or self.alternative_after.match(post)
        if alternative or pre.endswith("/") or post.startswith("/"):
            return Decision(UNCERTAIN, alternative.group().strip() if alternative else "/", "alternative")
        if mention.kind == "uncertain":
            return Decision(UNCERTAIN, mention.text, "uncertain_phrase")
        if mention.kind == "attribute":
            a = self.abnormal.search(pre) or self.abnormal.search(post)
            if a:
                return Decision(POSITIVE, a.group(), "attribute_abnormal")
            s = self.stable.search(pre) or self.stable.search(post)
            if s:
                return Decision(UNCERTAIN, s.group(), "attribute_stable")
            return None
        return Decision(POSITIVE, "", "positive")

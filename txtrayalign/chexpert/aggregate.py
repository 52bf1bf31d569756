"""Aggregation stage and the labeller API: one label per observation per text.

Per observation, over its mentions: a single decision is the label; with several, a positive beats
the rest, else negative and uncertain together give uncertain (CheXpert's rules, except that its code
lets "negative and uncertain" beat a positive too: "patchy opacity ... no focal airspace disease ...
possible scarring" would be -1 there; both references of the IU development set say 1, on both
halves). A positive or uncertain heart-failure mention ("chf", "heart failure") adds an uncertain
Cardiomegaly. No Finding is 1 when no observation other than Support Devices (and the "other
findings" listed under No Finding) is positive or uncertain, blank otherwise. An empty text gets no
label at all (all blank).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from txtrayalign.chexpert.classify import NEGATIVE, POSITIVE, UNCERTAIN, Classifier, Decision, SentenceContext
from txtrayalign.chexpert.mention import FILTERED_KINDS, Mention, MentionFinder, load_config
from txtrayalign.constants import OBSERVATIONS
from txtrayalign.text.sentences import split_sentences

N_OBS = len(OBSERVATIONS)
NO_FINDING = OBSERVATIONS.index("No Finding")
SUPPORT_DEVICES = OBSERVATIONS.index("Support Devices")
CARDIOMEGALY = OBSERVATIONS.index("Cardiomegaly")
_VERSUS = frozenset({"versus", "vs", "vs."})  # an uncertainty trigger that offers alternatives


@dataclass(frozen=True)
class Explanation:
    """One classified mention, for debugging: where, what, and why."""

    sentence: str
    phrase: str
    observation: str
    decision: float
    rule: str
    trigger: str


def _lower(text: str) -> str:
    low = text.lower()
    if len(low) != len(text):  # a few characters ("İ") change length when lower-cased
        low = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    return low


def combine(labels: list[float]) -> float:
    """Several decisions about one observation -> one label (positive first, see the module docstring)."""
    if len(labels) == 1:
        return labels[0]
    has_neg, has_unc, has_pos = NEGATIVE in labels, UNCERTAIN in labels, POSITIVE in labels
    if has_pos:
        return POSITIVE
    if has_neg and has_unc:
        return UNCERTAIN
    return labels[0]


class Labeller:
    """Mention finder + classifier + aggregation; sentence results are cached by sentence text."""

    def __init__(self, finder: MentionFinder | None = None, classifier: Classifier | None = None,
                 cache_size: int = 500_000):
        self.finder = finder or MentionFinder(load_config("observations.yaml"))
        self.classifier = classifier or Classifier(load_config("triggers.yaml"))
        self._cache: dict[str, tuple[tuple[tuple[int, ...], float, bool], ...]] = {}
        self._cache_size = cache_size

    def decide(self, sentence: str, mention: Mention, context: SentenceContext) -> Decision | None:
        """The classifier's decision on one mention, then the observation-level rules: an `affirmed`
        phrase negated or a `denied` one not negated says nothing (None), and an observation that
        every alternative of "X or Y" implies (Lung Opacity: scarring or atelectasis) is positive."""
        decision = self.classifier.classify(sentence, mention, context)
        if decision is None:
            return None
        if mention.kind in FILTERED_KINDS and not FILTERED_KINDS[mention.kind](decision.label):
            return None
        offers_alternatives = decision.rule == "alternative" or decision.trigger in _VERSUS
        certain = self.finder.certain_among_alternatives
        if offers_alternatives and all(o in certain for o in mention.observations):
            return Decision(POSITIVE, decision.trigger, "certain_among_alternatives")
        return decision

    def sentence_decisions(self, sentence: str) -> tuple[tuple[tuple[int, ...], float, bool], ...]:
        """(observation indices, label, is heart failure) per kept mention of one lower-case sentence."""
        hit = self._cache.get(sentence)
        if hit is not None:
            return hit
        mentions = self.finder.find(sentence)
        out = []
        if mentions:
            context = self.classifier.prepare(sentence)
            for mention in mentions:
                decision = self.decide(sentence, mention, context)
                if decision is not None:
                    out.append((mention.observations, decision.label, mention.kind == "chf"))
        result = tuple(out)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[sentence] = result
        return result

    def label_text(self, text: str) -> np.ndarray:
        """(14,) float64 labels of one text: 1, 0, -1, NaN (not mentioned)."""
        return self.label_sentences(split_sentences(_lower(text)) if text else [])

    def label_sentences(self, sentences: list[str]) -> np.ndarray:
        """(14,) labels of one text given as its lower-case sentences (linear in their total length)."""
        row = np.full(N_OBS, np.nan)
        if not sentences:
            return row
        per_obs: dict[int, list[float]] = {}
        no_finding = True
        for sentence in sentences:
            for observations, label, is_chf in self.sentence_decisions(sentence):
                for obs in observations:
                    if obs != SUPPORT_DEVICES and label != NEGATIVE:
                        no_finding = False
                    if obs == NO_FINDING:
                        continue
                    if is_chf and label != NEGATIVE:
                        per_obs.setdefault(CARDIOMEGALY, []).append(UNCERTAIN)
                    per_obs.setdefault(obs, []).append(label)
        for obs, labels in per_obs.items():
            row[obs] = combine(labels)
        if no_finding:
            row[NO_FINDING] = POSITIVE
        return row

    def label_texts(self, texts: Iterable[str]) -> np.ndarray:
        """(N, 14) float64 labels; identical texts are labelled once."""
        texts = list(texts)
        out = np.full((len(texts), N_OBS), np.nan)
        done: dict[str, np.ndarray] = {}
        for i, text in enumerate(texts):
            text = text if isinstance(text, str) else ""
            row = done.get(text)
            if row is None:
                row = done[text] = self.label_text(text)
            out[i] = row
        return out

    def explain(self, text: str) -> list[Explanation]:
        """Every mention of a text with its decision and the trigger that decided it."""
        out: list[Explanation] = []
        for sentence in split_sentences(_lower(text or "")):
            context = self.classifier.prepare(sentence)
            for mention in self.finder.find(sentence):
                decision = self.decide(sentence, mention, context)
                for obs in mention.observations:
                    out.append(Explanation(
                        sentence, mention.text, OBSERVATIONS[obs],
                        float("nan") if decision is None else decision.label,
                        "dropped" if decision is None else decision.rule,
                        "" if decision is None else decision.trigger,
                    ))
        return out


@lru_cache(maxsize=1)
def default_labeller() -> Labeller:
    return Labeller()


def label_texts(texts: Iterable[str]) -> np.ndarray:
    """Label texts with the 14 CheXpert observations: (N, 14) float64 in OBSERVATIONS order,
    1.0 positive, 0.0 negative, -1.0 uncertain, NaN not mentioned."""
    return default_labeller().label_texts(texts)


def label_reports(texts: Iterable[str]) -> np.ndarray:
    """Same as `label_texts` (the name used in docs/design.md)."""
    return label_texts(texts)


def explain(text: str) -> list[Explanation]:
    """Per-mention explanations (phrase, observation, decision, rule, trigger) of one text."""
    return default_labeller().explain(text)

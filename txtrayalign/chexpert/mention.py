"""Mention stage: find phrases of the 14 observations in a sentence with one compiled regex.

The phrase lists live in `phrases/observations.yaml` (syntax explained there). All mention phrases
of all observations are compiled into ONE regular expression: a zero-width lookahead tried at each
word start, with the alternatives bucketed by their first letter, so one scan finds every mention
(overlapping ones too, e.g. "pleural thickening" and "thickening"). Unmention phrases are compiled
into a second regex, run only on sentences that have a mention of an observation with unmentions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from txtrayalign.constants import OBSERVATIONS

KINDS = ("mention", "uncertain", "attribute", "chf", "affirmed", "denied")
# `affirmed`: a mention only when not negated (a negated one says nothing: blank, not 0);
# `denied`: a mention only when negated (a positive or uncertain one says nothing).
FILTERED_KINDS = {"affirmed": lambda label: label != 0.0, "denied": lambda label: label == 0.0}
OBSERVATION_INDEX = {name: i for i, name in enumerate(OBSERVATIONS)}


def phrase_to_regex(phrase: str) -> str:
    """Translate the phrase syntax of observations.yaml / triggers.yaml into a regex fragment.

    space -> one or more spaces/hyphens, `~` -> optional space/hyphen, `*` -> word suffix,
    `(` -> non-capturing group, `.` -> a literal dot; backslash escapes pass through.
    """
    out: list[str] = []
    i = 0
    p = phrase.lower()
    while i < len(p):
        c = p[i]
        if c == "\\":
            out.append(p[i : i + 2])
            i += 2
            continue
        if c == "(" and p[i + 1 : i + 2] != "?":
            out.append("(?:")
        elif c == " ":
            while p[i + 1 : i + 2] == " ":
                i += 1
            out.append(r"[\s\-]+")
        elif c == "~":
            out.append(r"[\s\-]*")
        elif c == "*" and (i == 0 or p[i - 1] not in "]}"):
            out.append("[a-z]*")
        elif c == ".":
            out.append(r"\.")
        else:
            out.append(c)
        i += 1
    return "".join(out)


def bounded(phrase: str) -> str:
    """The phrase's regex, anchored at word edges where it starts/ends with a letter or digit."""
    p = phrase.strip()
    body = phrase_to_regex(p)
    start = r"(?<![a-z0-9])" if p[:1].isalnum() else ""
    last = p[-1:]
    if last.isalnum() or last in "*)?":
        end = r"(?![a-z0-9])"
    else:
        end = ""
    return f"{start}(?:{body}){end}"


def union(phrases: list[str]) -> str:
    """One alternation of trigger phrases (longest first), each anchored at word edges."""
    ordered = sorted({p.strip().lower() for p in phrases if p.strip()}, key=len, reverse=True)
    return "|".join(bounded(p) for p in ordered)


@dataclass(frozen=True)
class Mention:
    """A phrase found in a sentence: the observations it names, its kind and its span."""

    observations: tuple[int, ...]
    kind: str
    start: int
    end: int
    text: str


_LITERAL = re.compile(r"[a-z0-9]*")
_LEADING_GROUP = re.compile(r"^\(([a-z0-9 |~-]+)\)(\??)(.*)$")


def _expand_leading_group(phrase: str) -> list[str]:
    """'(a|b) c' -> ['a c', 'b c']; '(x )?y' -> ['x y', 'y'] so the trie can index literal starts."""
    m = _LEADING_GROUP.match(phrase)
    if not m:
        return [phrase]
    options = m.group(1).split("|") + ([""] if m.group(2) else [])
    out: list[str] = []
    for option in options:
        out.extend(_expand_leading_group((option + m.group(3)).lstrip()))
    return out


def trie_regex(phrases: list[str], hyphen_guard: bool = True) -> str:
    """One regex (no capturing groups) matching any of `phrases`; a literal-prefix trie.

    Each phrase's leading letters go into a character trie, so at a word start the regex engine
    follows one path instead of trying every phrase in turn. Phrases that start with a letter or
    digit match only at a word start; others (";", ", the", "\\?") anywhere.
    """
    trie: dict = {}
    others: list[str] = []
    for phrase in phrases:
        for variant in _expand_leading_group(phrase.strip().lower()):
            if not variant[:1].isalnum():
                others.append(phrase.lower() if variant == phrase.strip().lower() else variant)  # " - " != "-"
                continue
            literal = _LITERAL.match(variant).group(0)
            if literal and variant[len(literal) : len(literal) + 1] in {"*", "?", "{"}:
                literal = literal[:-1]  # "tubes?" / "opaci*": the last letter belongs to the operator
            node = trie
            for ch in literal:
                node = node.setdefault(ch, {})
            node.setdefault("", set()).add(variant[len(literal) :])

    guard = r"(?![a-z0-9])" + (r"(?!-[a-z])" if hyphen_guard else "")

    def emit(node: dict) -> str:
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        rests = sorted(node.get("", ()), key=len, reverse=True)
        branches += [phrase_to_regex(rest) + guard if rest.strip() else guard for rest in rests]
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    parts = [r"(?<![a-z0-9])" + emit(trie)] if trie else []
    for phrase in sorted(others, key=len, reverse=True):
        last = phrase.strip()[-1:]
        end = guard if (last.isalnum() or last in "*)") else ""
        parts.append(phrase_to_regex(phrase) + end)
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


def _first_letter(phrase: str) -> str | None:
    c = phrase.strip().lower()[:1]
    return c if c.isalpha() else None


def _lookahead_union(entries: list[tuple[str, int]]) -> str:
    """`(?<![a-z0-9])(?=...)` over (phrase, group number) entries, bucketed by first letter.

    Each phrase becomes one capturing group, so `m.lastindex` tells which phrase matched; the
    entries must be given in pattern order (see `PhraseSet._ordered`). Zero-width, so phrases
    nested in a longer one are found too.
    """
    buckets: dict[str | None, list[tuple[str, int]]] = {}
    for phrase, gid in entries:
        buckets.setdefault(_first_letter(phrase), []).append((phrase, gid))
    parts = []
    for letter, items in sorted(buckets.items(), key=lambda kv: kv[0] or ""):
        items.sort(key=lambda it: len(it[0]), reverse=True)
        alts = "|".join(f"({phrase_to_regex(p.strip())}(?![a-z0-9])(?!-[a-z]))" for p, _ in items)
        parts.append(f"(?={letter})(?:{alts})" if letter else f"(?:{alts})")
    return r"(?<![a-z0-9])(?=" + "|".join(parts) + ")"


class PhraseSet:
    """Phrases with attached information, found in text by one fast regex scan.

    `fast` (a trie, no groups) finds each longest phrase at a word start; what a matched text means
    (which phrases, including shorter ones nested inside it) is worked out once per distinct text by
    `slow` (one capturing group per phrase, tried at every word start) and cached.
    """

    def __init__(self, entries: list[tuple[str, object]]):
        self._entries = self._ordered(entries)
        self._info = [info for _, info in self._entries]
        self.fast = re.compile(trie_regex([p for p, _ in self._entries]))
        self.slow = re.compile(_lookahead_union([(p, i + 1) for i, (p, _) in enumerate(self._entries)]))
        self._cache: dict[str, tuple[tuple[object, int, int], ...]] = {}

    @staticmethod
    def _ordered(entries: list[tuple[str, object]]) -> list[tuple[str, object]]:
        """Entries in the order their groups appear in `_lookahead_union`'s pattern."""
        buckets: dict[str | None, list[tuple[str, object]]] = {}
        for phrase, info in entries:
            buckets.setdefault(_first_letter(phrase), []).append((phrase, info))
        ordered: list[tuple[str, object]] = []
        for _, items in sorted(buckets.items(), key=lambda kv: kv[0] or ""):
            ordered.extend(sorted(items, key=lambda it: len(it[0]), reverse=True))
        return ordered

    def identify(self, text: str) -> tuple[tuple[object, int, int], ...]:
        """(info, start, end) of every phrase in `text` (overlapping ones too), cached by text."""
        hit = self._cache.get(text)
        if hit is None:
            found = []
            for m in self.slow.finditer(text):
                g = m.lastindex
                found.append((self._info[g - 1], m.start(g), m.end(g)))
            hit = self._cache[text] = tuple(found)
            if len(self._cache) > 200_000:
                self._cache.clear()
        return hit

    def find(self, text: str) -> list[tuple[object, int, int]]:
        out = []
        for m in self.fast.finditer(text):
            offset = m.start()
            for info, a, b in self.identify(m.group()):
                out.append((info, offset + a, offset + b))
        return out


_Blocked = dict[int, list[tuple[int, int]]]  # observation -> spans of its unmentions in a sentence


class MentionFinder:
    """Finds mentions (and drops those overlapping an unmention) with one regex scan per sentence."""

    def __init__(self, config: dict):
        entries: list[tuple[str, tuple[tuple[int, ...], str]]] = []
        unmentions: list[tuple[str, int]] = []
        for name, lists in config["observations"].items():
            if name not in OBSERVATION_INDEX:
                raise ValueError(f"observations.yaml: unknown observation {name!r}")
            obs = (OBSERVATION_INDEX[name],)
            for kind in KINDS:
                for phrase in lists.get(kind) or []:
                    entries.append((str(phrase), (obs, kind)))
            for phrase in lists.get("unmention") or []:
                unmentions.append((str(phrase), obs[0]))
        for item in config.get("shared") or []:
            obs = tuple(OBSERVATION_INDEX[o] for o in item["observations"])
            entries.append((str(item["phrase"]), (obs, str(item.get("kind", "mention")))))
        self.mentions = PhraseSet(entries)
        self.unmentions = PhraseSet(unmentions)
        self.has_unmentions = frozenset(o for _, o in unmentions)
        self.certain_among_alternatives = frozenset(
            OBSERVATION_INDEX[o] for o in config.get("certain_among_alternatives") or [])

    def find(self, sentence: str) -> list[Mention]:
        """Mentions in a lower-case sentence, in order of position."""
        found: list[Mention] = []
        blocked: dict[int, list[tuple[int, int]]] | None = None
        for (obs, kind), start, end in self.mentions.find(sentence):
            blocked = self._add(found, blocked, sentence, obs, kind, start, end)
        return found

    def _add(self, found: list[Mention], blocked: _Blocked | None, sentence: str,
             obs: tuple[int, ...], kind: str, start: int, end: int) -> _Blocked | None:
        """Append one mention unless a longer one of the same observations or an unmention covers it."""
        # A shorter phrase inside a longer one of the same observations adds nothing.
        if any(f.observations == obs and f.start <= start and end <= f.end for f in found[-4:]):
            return blocked
        if any(o in self.has_unmentions for o in obs):
            if blocked is None:
                blocked = {}
                for o, s, e in self.unmentions.find(sentence):
                    blocked.setdefault(o, []).append((s, e))
            keep = tuple(o for o in obs if not any(s < end and start < e for s, e in blocked.get(o, ())))
            if not keep:
                return blocked
            obs = keep
        found.append(Mention(obs, kind, start, end, sentence[start:end]))
        return blocked


@lru_cache(maxsize=4)
def load_config(name: str) -> dict:
    """A YAML file of the packaged `phrases/` folder."""
    text = resources.files("txtrayalign.chexpert").joinpath("phrases").joinpath(name).read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    _check_strings(config, f"phrases/{name}")
    return config


def _check_strings(node: object, where: str) -> None:
    """Every list item must be a string (YAML reads a bare `no` or `on` as a boolean)."""
    if isinstance(node, dict):
        for key, value in node.items():
            _check_strings(value, f"{where}: {key}")
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict):
                _check_strings(item, where)
            elif not isinstance(item, str):
                raise ValueError(f"{where}: {item!r} is not a string (quote it in the YAML file)")

"""Canary answers: keyed, meaning-preserving variants served only to flagged accounts.

An answer is rewritten at many *slots*: each occurrence of a phrase from a table of
interchangeable phrasings ("for example" / "for instance" / "e.g.", "do not" / "don't",
...) and list-formatting choices (bullet marker, numbered-list delimiter). The variant
chosen at a slot is HMAC(key, canary id, group, occurrence) mod (number of variants), so
it is deterministic per key and prompt, unrelated across keys, and the meaning is
unchanged (only equivalents are swapped).

Check: ask the suspect the canary prompts, find the same groups in its answers, and count
how often it used the keyed variant. A model that did not learn from the canaries matches
each slot with probability exactly 1/(variants), whatever its own style, because the key
is independent of it; the number of matches is Poisson-binomial and its upper tail is the
p-value.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from distillguard.provenance.keys import WatermarkKey


@dataclass(frozen=True)
class SlotGroup:
    name: str
    variants: tuple[str, ...]
    per_answer: bool = False  # formatting: one keyed choice for the whole answer
    line_start: bool = False  # a list marker at the start of a line


PHRASE_GROUPS: tuple[SlotGroup, ...] = (
    SlotGroup("example", ("for example", "for instance", "e.g.")),
    SlotGroup("addition", ("in addition", "additionally", "furthermore", "moreover")),
    SlotGroup("consequence", ("therefore", "thus", "hence", "consequently")),
    SlotGroup("purpose", ("in order to", "so as to")),
    SlotGroup("approx", ("approximately", "roughly")),
    SlotGroup("summary", ("in summary", "in short", "overall", "to sum up")),
    SlotGroup("ensure", ("make sure", "ensure")),
    SlotGroup("contrast", ("however", "that said")),
    SlotGroup("first", ("first", "firstly")),
    SlotGroup("last", ("finally", "lastly")),
    SlotGroup("do_not", ("do not", "don't")),
    SlotGroup("does_not", ("does not", "doesn't")),
    SlotGroup("is_not", ("is not", "isn't")),
    SlotGroup("cannot", ("cannot", "can't")),
    SlotGroup("you_will", ("you will", "you'll")),
    SlotGroup("large", ("large", "big")),
    SlotGroup("quickly", ("quickly", "rapidly")),
    SlotGroup("many", ("many", "numerous")),
    SlotGroup("choose", ("choose", "pick", "select")),
    SlotGroup("also", ("also", "as well")),
    SlotGroup("several", ("several", "a few")),
)
FORMAT_GROUPS: tuple[SlotGroup, ...] = (
    SlotGroup("bullet", ("-", "*", "•"), per_answer=True, line_start=True),
    SlotGroup("numbered", (".", ")"), per_answer=True, line_start=True),
)
ALL_GROUPS = PHRASE_GROUPS + FORMAT_GROUPS


def _phrase_regex(groups: Sequence[SlotGroup]) -> re.Pattern[str]:
    alts = sorted(((v, g.name) for g in groups for v in g.variants), key=lambda x: -len(x[0]))
    body = "|".join(re.escape(v) for v, _ in alts)
    # Not inside a word on either side; "e.g." ends in a dot so no trailing \b there.
    return re.compile(rf"(?<![\w'])(?:{body})(?![\w'])", re.IGNORECASE)


_PHRASE_RE = _phrase_regex(PHRASE_GROUPS)
_BULLET_RE = re.compile(r"(?m)^([ \t]*)([-*•])(?=[ \t])")
_NUMBERED_RE = re.compile(r"(?m)^([ \t]*\d+)([.)])(?=[ \t])")
_VARIANT_TO_GROUP = {v.lower(): g for g in PHRASE_GROUPS for v in g.variants}
_GROUPS_BY_NAME = {g.name: g for g in ALL_GROUPS}


def canary_id_for(prompt: str) -> str:
    """Canaries are keyed by their prompt, so a check needs only the prompts and the key."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:24]


def keyed_choice(key: WatermarkKey, canary_id: str, group: SlotGroup, occurrence: int) -> int:
    """Index of the variant served at this slot (uniform over variants for a random key)."""
    message = f"canary\x00{canary_id}\x00{group.name}\x00{occurrence}".encode()
    return int.from_bytes(key.digest(message)[:8], "little") % len(group.variants)


def _match_case(original: str, replacement: str) -> str:
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


@dataclass(frozen=True)
class Slot:
    group: str
    occurrence: int
    variant: int  # index into the group's variants


def find_slots(text: str) -> list[tuple[int, int, Slot]]:
    """(start, end, slot) of every slot in `text`, variant = the one the text uses."""
    found: list[tuple[int, int, Slot]] = []
    seen: dict[str, int] = {}
    for m in _PHRASE_RE.finditer(text):
        group = _VARIANT_TO_GROUP[m.group(0).lower()]
        j = seen.get(group.name, 0)
        seen[group.name] = j + 1
        variant = [v.lower() for v in group.variants].index(m.group(0).lower())
        found.append((m.start(), m.end(), Slot(group.name, j, variant)))
    for regex, group in ((_BULLET_RE, FORMAT_GROUPS[0]), (_NUMBERED_RE, FORMAT_GROUPS[1])):
        for m in regex.finditer(text):
            variant = group.variants.index(m.group(2))
            found.append((m.start(2), m.end(2), Slot(group.name, 0, variant)))
    return sorted(found, key=lambda f: f[0])


@dataclass(frozen=True)
class Canary:
    canary_id: str
    prompt: str
    text: str
    slots: tuple[Slot, ...]


def make_canary(prompt: str, answer: str, key: WatermarkKey) -> Canary:
    """The keyed variant of `answer` served to flagged accounts asking `prompt`."""
    cid = canary_id_for(prompt)
    pieces: list[str] = []
    slots: list[Slot] = []
    cursor = 0
    for start, end, slot in find_slots(answer):
        group = _GROUPS_BY_NAME[slot.group]
        choice = keyed_choice(key, cid, group, slot.occurrence)
        pieces.append(answer[cursor:start])
        pieces.append(_match_case(answer[start:end], group.variants[choice]))
        cursor = end
        slots.append(Slot(slot.group, slot.occurrence, choice))
    pieces.append(answer[cursor:])
    return Canary(cid, prompt, "".join(pieces), tuple(dict.fromkeys(slots)))


def canonical_form(text: str) -> str:
    """Every slot replaced by its group's first variant: equal for texts with the same meaning."""
    pieces, cursor = [], 0
    for start, end, slot in find_slots(text):
        pieces.append(text[cursor:start])
        pieces.append(_GROUPS_BY_NAME[slot.group].variants[0])
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces).lower()


@dataclass(frozen=True)
class CanaryCheck:
    n_prompts: int
    n_slots: int  # slots observed in the suspect's answers
    n_match: int  # ... where it used the keyed variant
    expected: float  # matches expected by chance
    p_value: float

    @property
    def match_rate(self) -> float:
        return self.n_match / self.n_slots if self.n_slots else float("nan")

    @property
    def chance_rate(self) -> float:
        return self.expected / self.n_slots if self.n_slots else float("nan")


def poisson_binomial_sf(k: int, n_by_p: Mapping[float, int]) -> float:
    """P[X >= k] for X a sum of independent binomials {p: n}; exact by convolving pmfs."""
    from scipy.stats import binom  # lazy: SciPy statistics take seconds to import

    pmf = np.array([1.0])
    for p, n in n_by_p.items():
        pmf = np.convolve(pmf, binom.pmf(np.arange(n + 1), n, p))
    return float(min(1.0, pmf[k:].sum())) if k < len(pmf) else 0.0


def score_responses(responses: Mapping[str, str], key: WatermarkKey) -> CanaryCheck:
    """Score suspect answers {prompt: answer}: each (prompt, group, occurrence) slot once."""
    n_match = 0
    by_chance: dict[float, int] = {}
    n_slots = 0
    for prompt, answer in responses.items():
        cid = canary_id_for(prompt)
        for slot in dict.fromkeys(s for _, _, s in find_slots(answer)):
            group = _GROUPS_BY_NAME[slot.group]
            n_match += int(slot.variant == keyed_choice(key, cid, group, slot.occurrence))
            p = 1.0 / len(group.variants)
            by_chance[p] = by_chance.get(p, 0) + 1
            n_slots += 1
    expected = sum(p * n for p, n in by_chance.items())
    p_value = poisson_binomial_sf(n_match, by_chance) if n_slots else 1.0
    return CanaryCheck(len(responses), n_slots, n_match, expected, p_value)


def canary_check(
    suspect: Callable[[str], str], prompts: Iterable[str], key: WatermarkKey
) -> CanaryCheck:
    """Query `suspect` (prompt -> answer) with the canary prompts and score its answers."""
    return score_responses({p: suspect(p) for p in dict.fromkeys(prompts)}, key)

"""A deterministic synthetic English corpus for provenance experiments (no downloads).

Templated sentences with many open lexical slots, so a language model trained on it has
real choices to make at most positions (a watermark needs entropy to hide in).
"""

from __future__ import annotations

import numpy as np

ADJECTIVES = [
    "small",
    "large",
    "quiet",
    "bright",
    "dark",
    "early",
    "late",
    "heavy",
    "light",
    "quick",
    "slow",
    "careful",
    "simple",
    "clever",
    "ancient",
    "modern",
    "famous",
    "hidden",
    "silent",
    "busy",
    "calm",
    "cold",
    "warm",
    "green",
    "blue",
    "red",
    "golden",
    "wooden",
    "strange",
    "gentle",
    "proud",
    "young",
    "old",
    "happy",
    "tired",
    "curious",
    "honest",
    "brave",
    "rare",
    "common",
    "narrow",
    "wide",
]
NOUNS = [
    "river",
    "forest",
    "village",
    "garden",
    "castle",
    "market",
    "bridge",
    "tower",
    "harbor",
    "valley",
    "mountain",
    "library",
    "school",
    "kitchen",
    "window",
    "letter",
    "story",
    "song",
    "lantern",
    "engine",
    "wagon",
    "basket",
    "mirror",
    "compass",
    "painting",
    "ladder",
    "blanket",
    "candle",
    "kettle",
    "violin",
    "notebook",
    "ribbon",
    "anchor",
    "feather",
    "pebble",
    "orchard",
    "meadow",
    "island",
    "cottage",
    "workshop",
    "museum",
    "station",
    "theater",
    "bakery",
    "chapel",
    "tunnel",
]
PEOPLE = [
    "Anna",
    "Ben",
    "Clara",
    "David",
    "Elena",
    "Felix",
    "Grace",
    "Hugo",
    "Iris",
    "Jonas",
    "Karin",
    "Leo",
    "Maya",
    "Noah",
    "Olga",
    "Paul",
    "Rosa",
    "Sam",
    "Tara",
    "Victor",
    "Wendy",
    "Yusuf",
    "Zoe",
    "Omar",
    "Lina",
    "Marco",
    "Nina",
    "Oscar",
    "Petra",
    "Ravi",
]
ROLES = [
    "baker",
    "farmer",
    "teacher",
    "sailor",
    "painter",
    "doctor",
    "miller",
    "weaver",
    "singer",
    "pilot",
    "gardener",
    "carpenter",
    "merchant",
    "student",
    "writer",
    "captain",
]
VERBS_PAST = [
    "found",
    "built",
    "painted",
    "carried",
    "repaired",
    "visited",
    "opened",
    "cleaned",
    "followed",
    "described",
    "watched",
    "crossed",
    "borrowed",
    "sold",
    "bought",
    "mended",
    "measured",
    "studied",
    "praised",
    "ignored",
]
VERBS_PRESENT = [
    "finds",
    "builds",
    "paints",
    "carries",
    "repairs",
    "visits",
    "opens",
    "cleans",
    "follows",
    "describes",
    "watches",
    "crosses",
    "borrows",
    "sells",
    "buys",
    "mends",
    "measures",
    "studies",
    "praises",
    "ignores",
]
PLACES = [
    "near the river",
    "behind the castle",
    "in the old market",
    "across the valley",
    "inside the library",
    "under the bridge",
    "beside the harbor",
    "at the village square",
    "on the mountain path",
    "in the quiet garden",
    "next to the station",
    "along the narrow road",
]
TIMES = [
    "in the morning",
    "at noon",
    "before dinner",
    "after the storm",
    "during the winter",
    "every spring",
    "late at night",
    "on a sunny day",
    "last summer",
    "at dawn",
]
NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve"]
CONNECTIVES = ["however", "meanwhile", "later", "then", "afterwards", "still", "instead", "finally"]

_SENTENCES = (
    "the {adj} {role} {vpast} a {adj} {noun} {place} .",
    "{person} {vpast} the {adj} {noun} {time} .",
    "{person} and {person} {vpast} {num} {adj} {noun}s {place} .",
    "{time} , the {role} {vpres} the {noun} {place} .",
    "every {role} {vpres} a {adj} {noun} {time} .",
    "{conn} , {person} {vpast} the {noun} and the {noun} .",
    "the {noun} was {adj} , so {person} {vpast} it {time} .",
    "{person} , the {adj} {role} , {vpres} {num} {noun}s .",
    "why did {person} say the {noun} was {adj} ?",
    "a {adj} {noun} stood {place} , and {person} {vpast} it .",
)


def _fill(template: str, rng: np.random.Generator) -> str:
    pools = {
        "adj": ADJECTIVES,
        "noun": NOUNS,
        "person": PEOPLE,
        "role": ROLES,
        "vpast": VERBS_PAST,
        "vpres": VERBS_PRESENT,
        "place": PLACES,
        "time": TIMES,
        "num": NUMBERS,
        "conn": CONNECTIVES,
    }
    out = template
    for name, pool in pools.items():
        token = "{" + name + "}"
        while token in out:
            out = out.replace(token, str(pool[int(rng.integers(len(pool)))]), 1)
    return out


def synthetic_corpus(n_docs: int = 6000, seed: int = 0, max_sentences: int = 3) -> list[str]:
    """`n_docs` short documents (1..max_sentences templated sentences each), deterministic."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        n = int(rng.integers(1, max_sentences + 1))
        sentences = [_fill(_SENTENCES[int(rng.integers(len(_SENTENCES)))], rng) for _ in range(n)]
        docs.append(" ".join(sentences))
    return docs

"""Column-wise text assembly: ids and prompts built from fragment libraries without row loops."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_ids(prefix: str, values: np.ndarray, digits: int = 16) -> pa.Array:
    """`prefix` + fixed-width lowercase hex of uint64 values, built from bytes (no formatting)."""
    v = values.astype(np.uint64)
    shifts = np.arange(digits - 1, -1, -1, dtype=np.uint64) * np.uint64(4)
    nibbles = ((v[:, None] >> shifts[None, :]) & np.uint64(0xF)).astype(np.uint8)
    chars = np.ascontiguousarray(_HEX[nibbles])
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(digits), len(v), [None, pa.py_buffer(chars.tobytes())]
    )
    body = fixed.cast(pa.binary()).cast(pa.string())
    if not prefix:
        return body
    return pc.binary_join_element_wise(pa.scalar(prefix), body, "")


def scramble(counter: np.ndarray, salt: int) -> np.ndarray:
    """A bijection on uint64 (odd multiplier, xor-shifts): unique, random-looking ids."""
    x = counter.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(salt & (2**64 - 1))
    x ^= x >> np.uint64(31)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(29)
    return x


def ints_to_str(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype(np.int64)).cast(pa.string())


def join(cols: list[pa.Array | pa.Scalar], sep: str = " ") -> pa.Array:
    """Join string columns with `sep`, squeezing the doubled separators empty fragments leave."""
    out = pc.binary_join_element_wise(*cols, sep)
    if sep == " ":
        out = pc.replace_substring(out, "  ", " ")
        out = pc.utf8_trim_whitespace(out)
    return out


SENTENCE = "<sentence>"  # a slot list starting with this marker begins a new sentence


def sentence(text: pa.Array) -> pa.Array:
    """End fragment-built text with punctuation so that a following sentence reads naturally."""
    done = pc.match_substring_regex(text, r"[.?!:)\n]$")
    empty = pc.equal(pc.binary_length(text), 0)
    ok = pc.or_(done, empty)
    return pc.if_else(ok, text, pc.binary_join_element_wise(text, pa.scalar("."), ""))


@dataclass(frozen=True)
class Slots:
    """Alternatives for each position of a recombined phrase."""

    options: tuple[pa.Array, ...]
    new_sentence: tuple[bool, ...]

    @staticmethod
    def of(lists: list[list[str]]) -> Slots:
        flags = tuple(bool(x) and x[0] == SENTENCE for x in lists)
        opts = tuple(
            pa.array(x[1:] if f else x, pa.string()) for x, f in zip(lists, flags, strict=True)
        )
        return Slots(opts, flags)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(o) for o in self.options)

    def draw(self, rng: np.random.Generator, n: int) -> pa.Array:
        out: pa.Array | None = None
        for opts, starts_sentence in zip(self.options, self.new_sentence, strict=True):
            col = opts.take(pa.array(rng.integers(0, len(opts), n)))
            out = col if out is None else join([sentence(out) if starts_sentence else out, col])
        assert out is not None
        return out


_PLACEHOLDER = re.compile(r"\{(a|b|q)\}")


@dataclass(frozen=True)
class Templates:
    """Texts with up to three {a}/{b}/{q} holes, split into parts so they fill column-wise."""

    parts: tuple[pa.Array, ...]  # 4 arrays: text before hole 1, between 1-2, 2-3, after 3
    holes: np.ndarray  # (n_templates, 3): 0=a, 1=b, 2=q, 3=none

    @staticmethod
    def of(texts: list[str]) -> Templates:
        parts: list[list[str]] = [[], [], [], []]
        holes = np.full((len(texts), 3), 3, dtype=np.int64)
        for t, text in enumerate(texts):
            pieces = _PLACEHOLDER.split(text)
            texts_only, names = pieces[0::2], pieces[1::2]
            if len(names) > 3:
                raise ValueError(f"template has more than 3 holes: {text[:60]}")
            texts_only += [""] * (4 - len(texts_only))
            for i in range(4):
                parts[i].append(texts_only[i])
            for i, name in enumerate(names):
                holes[t, i] = "abq".index(name)
        return Templates(tuple(pa.array(p, pa.string()) for p in parts), holes)

    def __len__(self) -> int:
        return len(self.parts[0])

    def fill(
        self, idx: np.ndarray, a: pa.Array, b: pa.Array, q: pa.Array | None = None
    ) -> pa.Array:
        n = len(idx)
        empty = pa.array([""] * n, pa.string()) if n else pa.array([], pa.string())
        stacked = pa.concat_arrays([a, b, q if q is not None else empty, empty])
        take_idx = pa.array(idx)
        cols: list[pa.Array] = [self.parts[0].take(take_idx)]
        for h in range(3):
            which = self.holes[idx, h]
            cols.append(stacked.take(pa.array(which * n + np.arange(n))))
            cols.append(self.parts[h + 1].take(take_idx))
        return pc.binary_join_element_wise(*cols, "")


@dataclass(frozen=True)
class Capability:
    slots: Slots
    templates: Templates | None
    attack_templates: Templates | None


@dataclass(frozen=True)
class Library:
    capabilities: dict[str, Capability]
    wrapper: tuple[pa.Array, ...]  # role, intro, format, closer
    casual_prefix: pa.Array
    casual_suffix: pa.Array
    workplace: Slots
    agent_task: Slots
    agent_tool_result: Slots
    batch: Templates
    batch_records: Slots
    benchmark: Templates
    system: dict[str, list[str]]
    responses: dict[str, pa.Array]


def _load_toml() -> dict:
    path = Path(str(resources.files("distillguard.simulate") / "data" / "prompts.toml"))
    with open(path, "rb") as fh:
        return tomllib.load(fh)


@cache
def library() -> Library:
    raw = _load_toml()
    caps = {}
    for name, spec in raw["payload"].items():
        caps[name] = Capability(
            Slots.of(spec["slots"]),
            Templates.of(spec["templates"]) if "templates" in spec else None,
            Templates.of(spec["attack_templates"]) if "attack_templates" in spec else None,
        )
    w = raw["wrapper"]
    return Library(
        capabilities=caps,
        wrapper=tuple(pa.array(w[k], pa.string()) for k in ("role", "intro", "format", "closer")),
        casual_prefix=pa.array(raw["casual"]["prefix"], pa.string()),
        casual_suffix=pa.array(raw["casual"]["suffix"], pa.string()),
        workplace=Slots.of(raw["workplace"]["slots"]),
        agent_task=Slots.of(raw["agent"]["task"]),
        agent_tool_result=Slots.of(raw["agent"]["tool_result"]),
        batch=Templates.of(raw["batch"]["templates"]),
        batch_records=Slots.of(raw["batch"]["records"]),
        benchmark=Templates.of(raw["benchmark"]["templates"]),
        system=dict(raw["system"]),
        responses={k: pa.array(v, pa.string()) for k, v in raw["response"].items()},
    )


def wrapper_space() -> int:
    """How many distinct attack wrappers recombination can produce (ignoring slot order)."""
    return int(np.prod([len(x) for x in library().wrapper]))

"""Events for a chunk of accounts of one persona, built column-wise (contract.EVENTS).

Everything here works on NumPy arrays and Arrow columns; the only Python loops run over the
handful of capabilities or styles in a chunk, never over requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard import contract
from distillguard.simulate.accounts import DAY_MS, HOUR_MS, N_ORDERS, PersonaAccounts
from distillguard.simulate.calibration import token_params, tokens_per_image
from distillguard.simulate.scenario import Persona, Scenario
from distillguard.simulate.text import hex_ids, ints_to_str, join, library, scramble, sentence

# Relative activity by local hour: people chat in the evening, office tools run 9 to 6.
HUMAN_HOURS = np.array(
    [
        0.6,
        0.35,
        0.2,
        0.15,
        0.15,
        0.2,
        0.4,
        0.8,
        1.2,
        1.5,
        1.6,
        1.6,
        1.5,
        1.6,
        1.6,
        1.6,
        1.5,
        1.4,
        1.5,
        1.7,
        1.9,
        1.9,
        1.6,
        1.1,
    ]
)
OFFICE_HOURS = np.array(
    [
        0.1,
        0.05,
        0.05,
        0.05,
        0.05,
        0.1,
        0.2,
        0.6,
        1.5,
        2.2,
        2.4,
        2.3,
        1.6,
        2.0,
        2.3,
        2.3,
        2.1,
        1.6,
        0.9,
        0.6,
        0.5,
        0.4,
        0.3,
        0.2,
    ]
)
COVER_MIX = {"chitchat": 0.35, "creative": 0.2, "coding": 0.25, "reasoning": 0.1, "math": 0.1}
CAPS = contract.CAPABILITIES
TOKENS_PER_TOOL = 160
ORDERS = np.array(
    [  # slot order of attack prompts: 0 role, 1 intro, 2 payload, 3 format, 4 closer
        [0, 1, 2, 3, 4],
        [1, 2, 3, 4, 0],
        [0, 3, 1, 2, 4],
        [2, 3, 0, 4, 1],
        [0, 1, 2, 4, 3],
        [3, 0, 1, 2, 4],
    ]
)
assert len(ORDERS) == N_ORDERS


@dataclass(frozen=True)
class Segment:
    """Part of the accounts of one persona: local account indices, events and time window each."""

    acct: np.ndarray
    n: np.ndarray
    t0: np.ndarray
    t1: np.ndarray


# ----------------------------------------------------------------------------------- timing


def _session_starts(
    kind: str,
    weekend: float,
    rng: np.random.Generator,
    t0: np.ndarray,
    t1: np.ndarray,
    tz: np.ndarray,
    burst_days: float,
) -> np.ndarray:
    n = len(t0)
    if kind == "flat":
        return t0 + rng.random(n) * (t1 - t0)
    if kind == "burst":
        # a benchmark run happens within a day or two of the account's window
        span = np.minimum(burst_days * DAY_MS, t1 - t0)
        return t0 + rng.random(n) * span
    hours = HUMAN_HOURS if kind == "human" else OFFICE_HOURS
    local0 = t0 + tz * HOUR_MS
    local1 = t1 + tz * HOUR_MS
    day0 = np.floor(local0 / DAY_MS)
    ndays = np.maximum(1, np.ceil(local1 / DAY_MS) - day0)
    day = day0 + np.floor(rng.random(n) * ndays)
    for _ in range(3):  # people work less at weekends: redraw most weekend sessions
        weekday = (day.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
        redo = (weekday >= 5) & (rng.random(n) > weekend)
        day = np.where(redo, day0 + np.floor(rng.random(n) * ndays), day)
    hour = rng.choice(24, size=n, p=hours / hours.sum())
    local = day * DAY_MS + (hour + rng.random(n)) * HOUR_MS
    start = local - tz * HOUR_MS
    # keep the local hour: move out-of-window sessions by whole days, clip only tiny windows
    start = np.where(start < t0, start + np.ceil((t0 - start) / DAY_MS) * DAY_MS, start)
    start = np.where(start >= t1, start - np.ceil((start - t1 + 1) / DAY_MS) * DAY_MS, start)
    return np.clip(start, t0, t1 - 1)


def timestamps(
    pa_: PersonaAccounts, seg: Segment, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrival times (ms), segment index and session id of every event, sorted by segment, time."""
    p = pa_.persona
    n_seg = len(seg.n)
    ev_seg = np.repeat(np.arange(n_seg), seg.n)
    if p.session_events > 0:
        per = seg.n / p.session_events * rng.uniform(0.7, 1.3, n_seg)
        n_sess = np.minimum(np.maximum(1, np.round(per)).astype(np.int64), seg.n)
    else:
        n_sess = np.ones(n_seg, np.int64)
    sess_off = np.concatenate([[0], np.cumsum(n_sess)[:-1]])
    sess = sess_off[ev_seg] + np.floor(rng.random(len(ev_seg)) * n_sess[ev_seg]).astype(np.int64)
    sess_seg = np.repeat(np.arange(n_seg), n_sess)
    acct = seg.acct[sess_seg]
    if p.session_events <= 0:  # a continuous stream starts near the window start
        kind = "flat"
        t_hi = seg.t0[sess_seg] + (seg.t1[sess_seg] - seg.t0[sess_seg]) * 0.01
    else:
        kind = p.timing
        t_hi = seg.t1[sess_seg]
    starts = _session_starts(
        kind,
        p.weekend_factor,
        rng,
        seg.t0[sess_seg].astype(np.float64),
        t_hi.astype(np.float64),
        pa_.tz_hours[acct],
        p.burst_days,
    )
    order = np.argsort(sess, kind="stable")
    sess_sorted = sess[order]
    cv = pa_.gap_cv[seg.acct[ev_seg[order]]]
    shape = 1.0 / np.maximum(cv, 0.05) ** 2
    if p.session_events > 0:
        mean_gap = np.full(len(order), p.gap_s * 1000.0)
    else:  # one continuous stream per segment spanning its whole window (pipelines, bots)
        mean_gap = ((seg.t1 - seg.t0) / np.maximum(seg.n, 1))[ev_seg[order]].astype(np.float64)
    gaps = rng.gamma(shape, mean_gap / shape)
    first = np.r_[True, sess_sorted[1:] != sess_sorted[:-1]]
    gaps[first] = 0.0
    csum = np.cumsum(gaps)
    base = np.maximum.accumulate(np.where(first, csum, 0.0))
    t = starts[sess_sorted] + (csum - base)
    if p.jitter_s > 0:
        t = t + rng.uniform(-p.jitter_s, p.jitter_s, len(t)) * 1000.0
    s_seg = ev_seg[order]
    t0, t1 = seg.t0[s_seg].astype(np.float64), seg.t1[s_seg].astype(np.float64)
    t = t0 + np.mod(t - t0, np.maximum(t1 - t0, 1.0))  # sessions running past the window wrap
    ts = t.astype(np.int64)
    final = np.lexsort((ts, s_seg))
    return ts[final], s_seg[final], sess_sorted[final]


# ----------------------------------------------------------------------------------- prompts


def _pick_caps(rng: np.random.Generator, mix: dict[str, float], n: int) -> np.ndarray:
    keys = np.array([CAPS.index(k) for k in mix])
    w = np.array(list(mix.values()), dtype=np.float64)
    return keys[rng.choice(len(keys), size=n, p=w / w.sum())]


def _numbers(rng: np.random.Generator, n: int) -> tuple[pa.Array, pa.Array]:
    return ints_to_str(rng.integers(2, 99, n)), ints_to_str(rng.integers(2, 60, n))


def _payload(cap: int, rng: np.random.Generator, n: int, attack: bool) -> pa.Array:
    spec = library().capabilities[CAPS[cap]]
    out = spec.slots.draw(rng, n)
    alts = [t for t in (spec.templates, spec.attack_templates if attack else None) if t is not None]
    if not alts:
        return out
    kind = rng.integers(0, len(alts) + 1, n)  # 0 keeps the slot text
    for k, tmpl in enumerate(alts, start=1):
        m = kind == k
        if not m.any():
            continue
        idx = np.flatnonzero(m)
        a, b = _numbers(rng, len(idx))
        filled = tmpl.fill(rng.integers(0, len(tmpl), len(idx)), a, b)
        out = _scatter(out, idx, filled)
    return out


def _scatter(base: pa.Array, idx: np.ndarray, values: pa.Array) -> pa.Array:
    """base with base[idx] replaced by values (via one take over the concatenation)."""
    sel = np.arange(len(base))
    sel[idx] = len(base) + np.arange(len(idx))
    return pa.concat_arrays([base, values]).take(pa.array(sel))


def payloads(caps: np.ndarray, rng: np.random.Generator, attack: bool) -> pa.Array:
    """One payload per event for its capability, grouped by capability then put back in order."""
    n = len(caps)
    parts, where = [], []
    for cap in np.unique(caps):
        idx = np.flatnonzero(caps == cap)
        parts.append(_payload(int(cap), rng, len(idx), attack))
        where.append(idx)
    if not parts:
        return pa.array([], pa.string())
    allidx = np.concatenate(where)
    inverse = np.empty(n, np.int64)
    inverse[allidx] = np.arange(n)
    return pa.concat_arrays(parts).take(pa.array(inverse))


def _casual(payload: pa.Array, rng: np.random.Generator) -> pa.Array:
    lib = library()
    n = len(payload)
    pre = lib.casual_prefix.take(pa.array(rng.integers(0, len(lib.casual_prefix), n)))
    suf = lib.casual_suffix.take(pa.array(rng.integers(0, len(lib.casual_suffix), n)))
    text = join([pre, payload, suf])
    lower = pa.array(rng.random(n) < 0.35)  # many people type in lower case
    return pc.if_else(lower, pc.utf8_lower(text), text)


def _attack(
    payload: pa.Array,
    code: np.ndarray,
    order: np.ndarray,
    paraphrase: float,
    rng: np.random.Generator,
) -> pa.Array:
    lib = library()
    n = len(payload)
    sizes = [len(x) for x in lib.wrapper]
    slots = []
    rest = code.copy()
    for size in sizes:
        slots.append(rest % size)
        rest = rest // size
    if paraphrase > 0:  # re-word one slot of this request's wrapper now and then
        which = rng.integers(0, 4, n)
        redo = rng.random(n) < paraphrase
        for s, size in enumerate(sizes):
            m = redo & (which == s)
            slots[s] = np.where(m, rng.integers(0, size, n), slots[s])
    cols = [lib.wrapper[s].take(pa.array(slots[s])) for s in range(4)]
    parts = [cols[0], cols[1], sentence(payload), cols[2], cols[3]]  # positions 0..4
    stacked = pa.concat_arrays(parts)
    rows = np.arange(n)
    ordered = [stacked.take(pa.array(ORDERS[order, k] * n + rows)) for k in range(5)]
    return join(ordered)


def _agent(turn: np.ndarray, rng: np.random.Generator) -> pa.Array:
    lib = library()
    n = len(turn)
    task = lib.agent_task.draw(rng, n)
    result = lib.agent_tool_result.draw(rng, n)
    return pc.if_else(pa.array(turn > 0), result, task)


def _batch(template: np.ndarray, rng: np.random.Generator) -> pa.Array:
    lib = library()
    n = len(template)
    a = ints_to_str(rng.integers(10_000, 9_999_999, n))
    filled = lib.batch.fill(template, a, a)
    return pc.binary_join_element_wise(filled, lib.batch_records.draw(rng, n), " ")


def _benchmark(template: np.ndarray, caps: np.ndarray, rng: np.random.Generator) -> pa.Array:
    lib = library()
    q = payloads(caps, rng, attack=False)
    empty = pa.array([""] * len(template), pa.string())
    return lib.benchmark.fill(template, empty, empty, q)


# ----------------------------------------------------------------------------------- events


def _models(
    sc: Scenario, pa_: PersonaAccounts, ts: np.ndarray, rng: np.random.Generator
) -> pa.Array:
    p = pa_.persona
    mix = p.models or {m: 1.0 for m in sc.models if not any(r.model == m for r in sc.new_models)}
    names = list(mix)
    w = np.array(list(mix.values()), dtype=np.float64)
    pick = rng.choice(len(names), size=len(ts), p=w / w.sum())
    all_names = [*names]
    for rel in sc.new_models:
        rel_ms = sc.start_ms + rel.at_day * DAY_MS
        ramp = np.clip((ts - rel_ms) / max(p.new_model_lag_h * HOUR_MS, 1.0), 0.0, 1.0)
        ramp[ts < rel_ms] = 0.0
        move = rng.random(len(ts)) < ramp * p.new_model_share
        all_names.append(rel.model)
        pick = np.where(move, len(all_names) - 1, pick)
    codes = pa.array(pick.astype(np.int32))
    return pa.DictionaryArray.from_arrays(codes, pa.array(all_names)).cast(pa.string())


def generate_events(
    sc: Scenario,
    pa_: PersonaAccounts,
    seg: Segment,
    ips: np.ndarray,
    uas: pa.Array,
    rng: np.random.Generator,
    counter0: int,
    salt: int,
) -> pa.Table:
    """All requests of one segment set, as a contract.EVENTS table."""
    p = pa_.persona
    ts, ev_seg, sess = timestamps(pa_, seg, rng)
    n = len(ts)
    acct = seg.acct[ev_seg]

    # conversations: a new one at each session start, and now and then inside a session
    new_conv = np.r_[True, sess[1:] != sess[:-1]] | (rng.random(n) < 1.0 / max(p.turns, 1.0))
    conv_start = np.flatnonzero(new_conv)
    conv_idx = np.cumsum(new_conv) - 1
    turn = np.arange(n) - conv_start[conv_idx]
    counter = counter0 + np.arange(n, dtype=np.int64)

    caps = _pick_caps(rng, p.capabilities, n)
    cover = rng.random(n) < p.cover_share
    if cover.any():
        caps[cover] = _pick_caps(rng, COVER_MIX, int(cover.sum()))
    prompt = _prompts(p.prompt_style, pa_, acct, caps, cover, turn, rng)

    # network and client
    ip_idx = pa_.ip_off[acct] + np.floor(rng.random(n) * pa_.ip_cnt[acct]).astype(np.int64)
    from distillguard.simulate.network import ip_strings

    client_ip = ip_strings(ips[ip_idx])
    ua_cnt = pa_.ua_cnt[acct]
    ua_pick = np.where(rng.random(n) < 0.85, 0, np.floor(rng.random(n) * ua_cnt).astype(np.int64))
    user_agent = uas.take(pa.array(pa_.ua_off[acct] + ua_pick))
    acct_ids = pa_.account_id.take(pa.array(acct))
    n_keys = 1 + (pa_.ids % np.uint64(3)).astype(np.int64)
    key = scramble(
        pa_.ids[acct] + (np.floor(rng.random(n) * n_keys[acct])).astype(np.uint64), salt ^ 0x4B45
    )
    system = pa.array(pa_.system, pa.string()).take(pa.array(acct))

    # request shape
    is_vision = caps == CAPS.index("vision")
    is_agentic = caps == CAPS.index("agentic")
    tool_cap = (caps == CAPS.index("tool_use")) | is_agentic
    lo, hi = p.tools
    has_tools = (tool_cap | (rng.random(n) < p.tools_prob)) & ~cover
    tools = np.where(has_tools, rng.integers(max(lo, 1), max(hi, 3) + 1, n), 0)
    tool_calls = np.where(
        tools > 0, np.minimum(rng.poisson(1.2 if p.prompt_style != "agent" else 1.8, n), tools), 0
    )
    ilo, ihi = p.images
    screenshot = is_agentic & (rng.random(n) < p.screenshot_prob)
    images = np.where(is_vision | screenshot, rng.integers(max(ilo, 1), max(ihi, 1) + 1, n), 0)
    max_tokens = np.asarray(p.max_tokens)[rng.integers(0, len(p.max_tokens), n)]
    thinking = rng.random(n) < p.thinking_prob
    budget = np.where(thinking, np.array([1024, 2048, 4096, 8192, 16000])[rng.integers(0, 5, n)], 0)
    t_lo, t_hi = p.temperature
    temperature = np.round(t_lo + (t_hi - t_lo) * rng.random(n), 2)

    mu_i, s_i, mu_o, s_o = token_params(p.length_profile, p.output_profile)
    sys_tokens = pc.fill_null(pc.binary_length(system), 0).to_numpy(zero_copy_only=False) // 4
    input_tokens = (
        np.exp(rng.normal(mu_i, s_i, n))
        + tools * TOKENS_PER_TOOL
        + images * tokens_per_image()
        + sys_tokens
    ).astype(np.int64)
    out = np.exp(rng.normal(mu_o, s_o, n)) * p.output_scale + budget * rng.random(n) * 0.6
    output_tokens = np.minimum(out, max_tokens + budget).astype(np.int64)

    status = _status(p, caps, rng, n)
    output_tokens = np.where(np.isin(status, [2, 3]), 0, output_tokens)
    output_tokens = np.where(status == 1, np.minimum(output_tokens, 40), output_tokens)
    response = _responses(caps, status, rng)

    conv_ids = hex_ids("conv_", scramble(counter[conv_start][conv_idx], salt ^ 0xC0), 16)
    return pa.table(
        {
            "request_id": hex_ids("req_", scramble(counter, salt), 16),
            "timestamp": pa.array(ts, pa.int64()).cast(contract.TIMESTAMP),
            "account_id": acct_ids,
            "api_key_id": hex_ids("key_", key, 12),
            "client_ip": client_ip,
            "user_agent": user_agent,
            "model": _models(sc, pa_, ts, rng),
            "system": system,
            "prompt": prompt,
            "response": response,
            "input_tokens": pa.array(input_tokens, pa.int64()),
            "output_tokens": pa.array(output_tokens, pa.int64()),
            "max_tokens": pa.array(max_tokens.astype(np.int64)),
            "temperature": pa.array(temperature, pa.float64()),
            "thinking_budget": pa.array(budget.astype(np.int64)),
            "tools": pa.array(tools.astype(np.int32)),
            "tool_calls": pa.array(tool_calls.astype(np.int32)),
            "images": pa.array(images.astype(np.int32)),
            "conversation_id": conv_ids,
            "turn": pa.array(turn.astype(np.int32)),
            "status": pa.DictionaryArray.from_arrays(
                pa.array(status.astype(np.int32)), pa.array(contract.STATUSES)
            ).cast(pa.string()),
        },
        schema=contract.EVENTS,
    )


def _prompts(
    style: str,
    pa_: PersonaAccounts,
    acct: np.ndarray,
    caps: np.ndarray,
    cover: np.ndarray,
    turn: np.ndarray,
    rng: np.random.Generator,
) -> pa.Array:
    p = pa_.persona
    if style == "attack":
        payload = payloads(caps, rng, attack=True)
        text = _attack(payload, pa_.template[acct], pa_.order[acct], p.paraphrase, rng)
        if cover.any():
            casual = _casual(payloads(caps, rng, attack=False), rng)
            text = pc.if_else(pa.array(cover), casual, text)
        return text
    if style == "casual":
        return _casual(payloads(caps, rng, attack=False), rng)
    if style == "workplace":
        return sentence(library().workplace.draw(rng, len(caps)))
    if style == "agent":
        return _agent(turn, rng)
    if style == "batch":
        return _batch(pa_.template[acct], rng)
    return _benchmark(pa_.template[acct], caps, rng)


def _status(p: Persona, caps: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    refuse = p.refusal_rate * np.where(caps == CAPS.index("sensitive"), 6.0, 1.0)
    u = rng.random(n)
    status = np.zeros(n, np.int64)
    status[u < refuse] = 1
    status[(u >= refuse) & (u < refuse + p.rate_limited)] = 3
    status[(u >= refuse + p.rate_limited) & (u < refuse + p.rate_limited + 0.002)] = 2
    return status


def _responses(caps: np.ndarray, status: np.ndarray, rng: np.random.Generator) -> pa.Array:
    lib = library().responses
    n = len(caps)
    parts, where = [], []
    for cap in np.unique(caps):
        idx = np.flatnonzero(caps == cap)
        opts = lib[CAPS[int(cap)]]
        parts.append(opts.take(pa.array(rng.integers(0, len(opts), len(idx)))))
        where.append(idx)
    allidx = np.concatenate(where) if where else np.zeros(0, np.int64)
    inverse = np.empty(n, np.int64)
    inverse[allidx] = np.arange(n)
    text = pa.concat_arrays(parts).take(pa.array(inverse)) if parts else pa.array([], pa.string())
    refused = lib["refused"].take(pa.array(rng.integers(0, len(lib["refused"]), n)))
    text = pc.if_else(pa.array(status == 1), refused, text)
    return pc.if_else(pa.array(np.isin(status, [2, 3])), pa.nulls(n, pa.string()), text)

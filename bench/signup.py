"""Sign-up check (issue 9): replay sign-ups in time order against detection state of the past.

    .venv/bin/python bench/signup.py [--scenarios seed-report evasive] [--seeds 611 612]
                                     [--scale 0.01] [--checkpoints 0.5 1 2 3 6 ... 27]
                                     [--policy POLICY.toml]

For each scenario and seed: simulate; at each checkpoint T (days after the start: twice in the
first day, daily to day 3, then every 3 days) run `detect` on the events before T with the
accounts created before T; judge every account created in [T, next T) with that
state (`signup.check_signups`, the code behind `signup-check`). Ground truth comes from the
simulator's `signups.parquet` (replacement accounts) and `labels.parquet`.

Reported:
  * replacements of already-detected campaigns: attacker accounts created after their campaign
    started whose true campaign had >= 3 accounts in detected campaigns at the checkpoint used;
    share stopped (deny) or sent to verification at sign-up, and that this happened before the
    account's first request (always, by construction of the replay; checked);
  * benign friction per persona: in-window benign sign-ups sent to verification or denied;
  * a larger benign check: every benign account judged against the last checkpoint's state in two
    folds (each fold left out of what is known, so no account matches itself);
  * for missed replacements: the evidence they had, and whether the verification their sign-up
    path names would have failed them had it been asked for (`signup.paths` rules).

Seeds used while writing the check: 1 (seed-report, evasive); 901-904 held out for its first
version (now spent). Third session: tuned on 601-606 (evasive) and 601-602 (seed-report); the
default seeds 611, 612 (and 613-616 for evasive) were held out until the final run.
Writes bench/out/signup/results.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import Counter, defaultdict
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard.pipeline.detect import DetectConfig, run_detect
from distillguard.report.rundir import RunDir
from distillguard.signup.decide import check_signups
from distillguard.signup.known import KnownState, run_ip_intel
from distillguard.signup.policy import SignupPolicy, load_signup_policy
from distillguard.simulate import simulate

OUT = Path(__file__).parent / "out" / "signup"
DAY_MS = 86_400_000
HELD_OUT_SEEDS = (611, 612)
MIN_DETECTED = 3  # a true campaign counts as detected with this many accounts in campaigns


def _sim(scenario: str, seed: int, scale: float) -> Path:
    path = OUT / f"{scenario}-{seed}" / "sim"
    if not (path / "signups.parquet").exists():
        simulate(scenario, seed=seed, scale=scale, out=path)
    return path


def _prefix(sim: Path, at_ms: int, dst: Path) -> None:
    """Events before `at_ms` and accounts created before it: what a provider knew at T."""
    dst.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT * FROM read_parquet('{sim}/events.parquet') "
        f"WHERE epoch_ms(timestamp) < {at_ms}) TO '{dst}/events.parquet'"
    )
    con.execute(
        f"COPY (SELECT * FROM read_parquet('{sim}/accounts.parquet') "
        f"WHERE epoch_ms(created_at) < {at_ms}) TO '{dst}/accounts.parquet'"
    )
    con.close()
    shutil.copy(sim / "releases.parquet", dst / "releases.parquet")
    shutil.copy(sim / "ip_intel.csv", dst / "ip_intel.csv")


def _day_name(day: float) -> str:
    return f"day{int(day):02d}" if float(day).is_integer() else f"day{day:04.1f}"


def _detect_at(sim: Path, at_ms: int, day: float) -> Path:
    det = sim.parent / f"detect-{_day_name(day)}"
    if (det / "summary.json").exists():  # written last: a finished run
        return det
    shutil.rmtree(det, ignore_errors=True)
    inputs = sim.parent / f"inputs-{_day_name(day)}"
    _prefix(sim, at_ms, inputs)
    run_detect(DetectConfig.for_simulation(inputs, det))
    shutil.rmtree(det / "work" / "spill", ignore_errors=True)
    return det


def _detected_campaigns(det: Path, labels: pa.Table) -> set[str]:
    con = duckdb.connect()
    con.register("labels", labels)
    rows = con.execute(
        f"SELECT l.campaign_id FROM read_parquet('{det}/accounts.parquet') a "
        "JOIN labels l USING (account_id) WHERE a.campaign_id IS NOT NULL "
        f"AND l.campaign_id IS NOT NULL GROUP BY 1 HAVING count(*) >= {MIN_DETECTED}"
    ).fetchall()
    con.close()
    return {r[0] for r in rows}


def _first_requests(sim: Path) -> pa.Table:
    return duckdb.sql(
        f"SELECT account_id, min(epoch_ms(timestamp)) AS first_request_ms "
        f"FROM read_parquet('{sim}/events.parquet') GROUP BY 1"
    ).to_arrow_table()


def replay(
    scenario: str, seed: int, scale: float, checkpoints: list[float], policy_path: Path | None
) -> dict:
    started = time.perf_counter()
    sim = _sim(scenario, seed, scale)
    truth = json.loads((sim / "truth.json").read_text())
    start_ms = _start_ms(truth)
    accounts = pq.read_table(sim / "accounts.parquet")
    labels = pq.read_table(sim / "labels.parquet")
    signups = pq.read_table(sim / "signups.parquet")
    policy = load_signup_policy(policy_path)
    created = pc.cast(accounts["created_at"], pa.int64())
    days = [d for d in checkpoints if 0 < d < truth["days"]]
    judged: list[pa.Table] = []
    detect_s = 0.0
    det = None
    for k, day in enumerate(days):
        at = start_ms + int(day * DAY_MS)
        until = start_ms + int((days[k + 1] if k + 1 < len(days) else truth["days"]) * DAY_MS)
        t0 = time.perf_counter()
        det = _detect_at(sim, at, day)
        detect_s += time.perf_counter() - t0
        new = accounts.filter(pc.and_(pc.greater_equal(created, at), pc.less(created, until)))
        if not new.num_rows:
            continue
        run = RunDir(det)
        before = accounts.filter(pc.less(created, at))  # the provider's own sign-up records
        known = KnownState.from_run(
            run, policy, exclude=new["account_id"].combine_chunks(), signups=before
        )
        decisions = check_signups(new, known, policy, run_ip_intel(run))
        detected = _detected_campaigns(det, labels)
        judged.append(
            decisions.append_column("checkpoint_day", pa.array([float(day)] * new.num_rows))
            .append_column("created_ms", pc.cast(new["created_at"], pa.int64()))
            .append_column("detected", pa.array([",".join(sorted(detected))] * new.num_rows))
        )
    decisions = pa.concat_tables(judged)
    stress = _benign_stress(det, accounts, labels, policy) if det else None
    con = duckdb.connect()
    con.register("d", decisions)
    con.register("labels", labels)
    con.register("signups", signups.select(["account_id", "replacement"]))
    con.register("first", _first_requests(sim))
    con.register("fails", _path_check_fails(accounts, policy))
    rows = con.execute(
        """
        SELECT d.account_id, l.persona, l.campaign_id AS true_campaign, s.replacement,
               d.decision, d.verification, d.evidence, d.checkpoint_day, d.tier,
               list_contains(string_split(d.detected, ','), l.campaign_id) AS campaign_detected,
               f.first_request_ms IS NULL OR f.first_request_ms > d.created_ms AS before_first,
               x.check_name, x.check_fails
        FROM d JOIN labels l USING (account_id) JOIN signups s USING (account_id)
        LEFT JOIN first f USING (account_id) LEFT JOIN fails x USING (account_id)
        """
    ).to_arrow_table()
    con.close()
    pq.write_table(rows, sim.parent / "decisions.parquet")
    attackers = _attacker_stress(det, accounts, labels, policy) if det else None
    return {
        "scenario": scenario,
        "seed": seed,
        "scale": scale,
        "checkpoints": days,
        "detect_seconds": round(detect_s, 1),
        "seconds": round(time.perf_counter() - started, 1),
        **_summarise(rows),
        "benign_stress": stress,
        "attacker_stress": attackers,
    }


def _path_check_fails(accounts: pa.Table, policy: SignupPolicy) -> pa.Table:
    """Per account: the verification its sign-up path asks for, and whether that check would
    fail it (`signup.paths` rules; a card counts as shared when any other account holds it)."""
    from distillguard.signup.paths import _fails

    pay = accounts["payment_fingerprint"].combine_chunks()
    counts = pc.value_counts(pay.filter(pc.is_valid(pay)))
    shared = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    tiers = pc.coalesce(pc.utf8_lower(accounts["tier"]), pa.scalar("unknown"))
    t = pa.table(
        {
            "domain": pc.utf8_lower(accounts["email_domain"]),
            "org_id": accounts["org_id"],
            # a shared card keeps its value; an own card is made unique per row below
            "payment": pc.if_else(pc.is_in(pay, value_set=shared), pay, accounts["account_id"]),
        }
    )
    checks = [policy.checks.get(x, policy.checks.get("unknown", "payment")) for x in
              tiers.to_pylist()]  # fmt: skip
    fails = {c: _fails(t, c).to_pylist() for c in set(checks)}
    return pa.table(
        {
            "account_id": accounts["account_id"],
            "check_name": pa.array(checks, pa.string()),
            "check_fails": pa.array([fails[c][i] for i, c in enumerate(checks)], pa.bool_()),
        }
    )


def _start_ms(truth: dict) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(truth["start"]).timestamp() * 1000)


def _checks(caught: list[dict]) -> dict[str, int]:
    return dict(Counter(x["verification"] for x in caught if x["verification"]))


def _summarise(rows: pa.Table) -> dict:
    r = rows.to_pylist()
    repl = [x for x in r if x["replacement"] and x["campaign_detected"]]
    caught = [x for x in repl if x["decision"] != "allow"]
    evidence: dict[str, int] = defaultdict(int)
    for x in caught:
        for e in x["evidence"]:
            evidence[e] += 1
    missed = [x for x in repl if x["decision"] == "allow"]
    missed_evidence: dict[str, int] = defaultdict(int)
    for x in missed:
        for e in x["evidence"] or ["none"]:
            missed_evidence[e] += 1
    undetected = [x for x in r if x["replacement"] and not x["campaign_detected"]]
    benign = [x for x in r if x["true_campaign"] is None]
    per_persona: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for x in benign:
        p = per_persona[x["persona"]]
        p["signups"] += 1
        p[x["decision"]] += 1
    return {
        "replacements_of_detected": len(repl),
        "replacements_caught": len(caught),
        "replacements_denied": sum(x["decision"] == "deny" for x in repl),
        "replacements_verified": sum(x["decision"] == "require_verification" for x in repl),
        "caught_before_first_request": sum(x["before_first"] for x in caught),
        "verification_checks": dict(
            Counter(x["verification"] for x in caught if x["verification"])
        ),
        "caught_evidence": dict(sorted(evidence.items(), key=lambda kv: -kv[1])),
        "missed_evidence": dict(sorted(missed_evidence.items(), key=lambda kv: -kv[1])),
        # what the path's own verification would do to the missed ones, had it been asked for
        "missed_by_check": dict(
            Counter(
                f"{x['check_name']}:{'fails' if x['check_fails'] else 'passes'}" for x in missed
            )
        ),
        "replacements_of_undetected": len(undetected),
        "undetected_caught": sum(x["decision"] != "allow" for x in undetected),
        "benign_signups": len(benign),
        "benign_verified": sum(x["decision"] == "require_verification" for x in benign),
        "benign_denied": sum(x["decision"] == "deny" for x in benign),
        "benign_per_persona": {k: dict(v) for k, v in sorted(per_persona.items())},
    }


def _leave_half_out(
    det: Path, accounts: pa.Table, policy: SignupPolicy, ids: pa.Array, group: dict[str, str]
) -> dict:
    """Judge `ids` as new sign-ups against the run, each half left out of what is known in turn
    (halves by the last hex digit of the scrambled id); decision counts per `group[id]`."""
    fold = pc.is_in(pc.utf8_slice_codeunits(ids, -1), value_set=pa.array(list("02468ace")))
    run = RunDir(det)
    per: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for side in (True, False):
        held = ids.filter(pc.equal(fold, side))
        new = accounts.filter(pc.is_in(accounts["account_id"], value_set=held))
        known = KnownState.from_run(run, policy, exclude=held, signups=accounts)
        d = check_signups(new, known, policy, run_ip_intel(run))
        for a, dec in zip(d["account_id"].to_pylist(), d["decision"].to_pylist(), strict=True):
            per[group[a]]["accounts"] += 1
            per[group[a]][dec] += 1
    return {k: dict(v) for k, v in sorted(per.items())}


def _benign_stress(det: Path, accounts: pa.Table, labels: pa.Table, policy: SignupPolicy) -> dict:
    """Every benign account judged against the last state, two folds left out in turn."""
    benign = labels.filter(pc.is_null(labels["campaign_id"]))
    persona = dict(
        zip(labels["account_id"].to_pylist(), labels["persona"].to_pylist(), strict=True)
    )
    return _leave_half_out(det, accounts, policy, benign["account_id"].combine_chunks(), persona)


def _attacker_stress(det: Path, accounts: pa.Table, labels: pa.Table, policy: SignupPolicy) -> dict:
    """Every account of a detected campaign judged as if it signed up after the last checkpoint,
    two folds left out of what is known in turn (a larger, less faithful sample than the replay:
    evasive campaigns create few replacements inside the simulated window)."""
    detected = _detected_campaigns(det, labels)
    bad = labels.filter(pc.is_in(labels["campaign_id"], value_set=pa.array(sorted(detected))))
    campaign = dict(zip(bad["account_id"].to_pylist(), bad["campaign_id"].to_pylist(), strict=True))
    return _leave_half_out(det, accounts, policy, bad["account_id"].combine_chunks(), campaign)


def markdown(results: list[dict]) -> str:
    lines = [
        "| scenario | seed | replacements of detected campaigns | caught (deny + verify) "
        "| denied | verified | share caught | caught before first request "
        "| replacements of undetected campaigns (caught) | benign in-window sign-ups "
        "| benign verified | benign denied |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        n, c = r["replacements_of_detected"], r["replacements_caught"]
        share = f"{c / n:.1%}" if n else "-"
        lines.append(
            f"| {r['scenario']} | {r['seed']} | {n} | {c} | {r['replacements_denied']} | "
            f"{r['replacements_verified']} | {share} | {r['caught_before_first_request']}/{c} | "
            f"{r['replacements_of_undetected']} ({r['undetected_caught']}) | "
            f"{r['benign_signups']} | {r['benign_verified']} | {r['benign_denied']} |"
        )
    lines += ["", "Accounts of detected campaigns judged as if signing up after the last "
              "checkpoint (leave-half-out):", "",
              "| scenario | seed | campaign | accounts | deny | verify | allow | caught |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        for c, v in (r.get("attacker_stress") or {}).items():
            caught = v.get("deny", 0) + v.get("require_verification", 0)
            lines.append(
                f"| {r['scenario']} | {r['seed']} | {c} | {v['accounts']} | {v.get('deny', 0)} | "
                f"{v.get('require_verification', 0)} | {v.get('allow', 0)} | "
                f"{caught / v['accounts']:.1%} |"
            )
    lines += ["", "Benign friction per persona (in-window sign-ups; all benign accounts, "
              "leave-half-out against the last checkpoint):", "",
              "| scenario | seed | persona | in-window sign-ups | verify | deny | "
              "all accounts | verify | deny |",
              "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        stress = r["benign_stress"] or {}
        for persona in sorted(set(stress) | set(r["benign_per_persona"])):
            w = r["benign_per_persona"].get(persona, {})
            s = stress.get(persona, {})
            lines.append(
                f"| {r['scenario']} | {r['seed']} | {persona} | {w.get('signups', 0)} | "
                f"{w.get('require_verification', 0)} | {w.get('deny', 0)} | "
                f"{s.get('accounts', 0)} | {s.get('require_verification', 0)} | "
                f"{s.get('deny', 0)} |"
            )
    return "\n".join([*lines, "", *totals(results)])


def _add(into: dict[str, int], counts: dict[str, int]) -> None:
    for k, v in counts.items():
        into[k] = into.get(k, 0) + v


def totals(results: list[dict]) -> list[str]:
    """One row per scenario over all its seeds, and what the missed replacements had."""
    lines = [
        "Totals per scenario (all seeds of this run):",
        "",
        "| scenario | seeds | replacements caught | missed: evidence they had | missed: their "
        "path's check, had it been asked | campaign accounts caught (leave-half-out) "
        "| benign in-window verify / deny | benign leave-half-out verify / deny |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scenario in dict.fromkeys(r["scenario"] for r in results):
        mine = [r for r in results if r["scenario"] == scenario]
        ev: dict[str, int] = {}
        checks: dict[str, int] = {}
        stress = {"accounts": 0, "caught": 0}
        benign = {"n": 0, "v": 0, "d": 0, "sn": 0, "sv": 0, "sd": 0}
        for r in mine:
            _add(ev, r["missed_evidence"])
            _add(checks, r["missed_by_check"])
            for v in (r.get("attacker_stress") or {}).values():
                stress["accounts"] += v["accounts"]
                stress["caught"] += v.get("deny", 0) + v.get("require_verification", 0)
            benign["n"] += r["benign_signups"]
            benign["v"] += r["benign_verified"]
            benign["d"] += r["benign_denied"]
            for v in (r.get("benign_stress") or {}).values():
                benign["sn"] += v["accounts"]
                benign["sv"] += v.get("require_verification", 0)
                benign["sd"] += v.get("deny", 0)
        n = sum(r["replacements_of_detected"] for r in mine)
        c = sum(r["replacements_caught"] for r in mine)
        share = f" ({c / n:.0%})" if n else ""
        caught = stress["caught"] / stress["accounts"] if stress["accounts"] else 0.0
        lines.append(
            f"| {scenario} | {', '.join(str(r['seed']) for r in mine)} | {c} of {n}{share} | "
            + (", ".join(f"{k} {v}" for k, v in sorted(ev.items(), key=lambda kv: -kv[1])) or "-")
            + " | "
            + (", ".join(f"{k} {v}" for k, v in sorted(checks.items())) or "-")
            + f" | {stress['caught']} of {stress['accounts']} ({caught:.0%}) | "
            f"{benign['v']} / {benign['d']} of {benign['n']} | "
            f"{benign['sv']} / {benign['sd']} of {benign['sn']} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="+", default=["seed-report", "evasive"])
    ap.add_argument("--seeds", nargs="+", type=int, default=list(HELD_OUT_SEEDS))
    ap.add_argument("--scale", type=float, default=0.01)
    ap.add_argument("--checkpoints", nargs="+", type=float, default=[0.5, 1, 2, *range(3, 28, 3)])
    ap.add_argument("--policy", type=Path, default=None, help="policy file (default: shipped)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    for scenario in args.scenarios:
        for seed in args.seeds:
            results.append(replay(scenario, seed, args.scale, args.checkpoints, args.policy))
            print(json.dumps({k: v for k, v in results[-1].items() if k != "benign_stress"}),
                  flush=True)  # fmt: skip
    tag = "-".join([*args.scenarios, *map(str, args.seeds)])
    tag += f"-{args.policy.stem}" if args.policy else ""
    (OUT / f"results-{tag}.json").write_text(json.dumps(results, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    main()

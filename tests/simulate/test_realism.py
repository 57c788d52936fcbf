"""Simulated benign traffic against the real-traffic statistics in calibration.json."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq

from distillguard.simulate import simulate
from distillguard.simulate.accounts import TZ_OF_COUNTRY
from distillguard.simulate.calibration import calibration
from distillguard.simulate.scenario import parse_scenario

# Tolerances (stated in docs/simulator.md): log-length mean/sd within 0.1 nats, median within
# 0.15 nats; median per-client inter-arrival CV within 25 % of the ServeGen clients'.
LOG_TOL, MEDIAN_TOL, CV_TOL = 0.1, 0.15, 0.25


def _q(sql: str) -> list[tuple]:
    return duckdb.sql(sql).fetchall()


def test_chat_token_lengths_match_azure_conversation_trace(seed_report_run: Path) -> None:
    d = seed_report_run
    base = (
        f"FROM read_parquet('{d}/events.parquet') e JOIN read_parquet('{d}/labels.parquet') l "
        "USING (account_id) WHERE persona = 'chat_user'"
    )
    ((mean_in, sd_in, n),) = _q(
        f"SELECT avg(ln(input_tokens)), stddev_pop(ln(input_tokens)), count(*) "
        f"{base} AND tools = 0 AND images = 0 AND system IS NULL"
    )
    ((med_out,),) = _q(
        f"SELECT median(ln(output_tokens)) {base} AND status = 'ok' AND thinking_budget = 0"
    )
    conv = calibration()["token_profiles"]["conv"]
    assert n > 2000
    assert abs(mean_in - conv["input"]["mu"]) < LOG_TOL
    assert abs(sd_in - conv["input"]["sigma"]) < LOG_TOL
    assert abs(med_out - conv["output"]["mu"]) < MEDIAN_TOL


def test_api_client_burstiness_matches_servegen_clients(tmp_path: Path) -> None:
    raw = {
        "name": "cv-check",
        "start": "2026-03-02T00:00:00Z",
        "days": 7,
        "models": ["m"],
        "persona": [
            {
                "name": "api_app",
                "kind": "benign",
                "accounts": 120,
                "events": 36000,
                "volume_sigma": 0,
                "timing": "flat",
                "session_events": 0,
                "network": "datacenter",
                "models": {"m": 1.0},
            }
        ],
    }
    simulate(parse_scenario(raw), scale=1.0, seed=3, out=tmp_path)
    ev = pq.read_table(tmp_path / "events.parquet", columns=["account_id", "timestamp"])
    ids = ev["account_id"].to_numpy(zero_copy_only=False)
    ts = ev["timestamp"].cast("int64").to_numpy()
    order = np.lexsort((ts, ids))
    ids, ts = ids[order], ts[order]
    gaps = np.diff(ts).astype(np.float64)
    same = ids[1:] == ids[:-1]
    cvs = []
    for acct in np.unique(ids):
        g = gaps[same & (ids[1:] == acct)]
        cvs.append(g.std() / g.mean())
    real = np.asarray(calibration()["client_cv"]["quantiles"])
    real_median = real[len(real) // 2]
    assert abs(np.median(cvs) - real_median) / real_median < CV_TOL
    # the spread matters too: the quieter and burstier quartiles are both present
    assert np.quantile(cvs, 0.25) < real_median < np.quantile(cvs, 0.75)


def test_people_follow_the_clock_pipelines_do_not(seed_report_run: Path) -> None:
    d = seed_report_run
    rows = _q(
        "SELECT persona, country, hour(timezone('UTC', timestamp)) AS h, count(*) "
        f"FROM read_parquet('{d}/events.parquet') e "
        f"JOIN read_parquet('{d}/labels.parquet') l USING (account_id) "
        f"JOIN read_parquet('{d}/accounts.parquet') a USING (account_id) "
        "WHERE persona IN ('chat_user', 'enterprise_batch') GROUP BY ALL"
    )
    local = {"chat_user": np.zeros(24), "enterprise_batch": np.zeros(24)}
    for persona, country, h, n in rows:
        if persona == "chat_user" and country in ("US",):
            continue  # US accounts are spread over several time zones
        local[persona][int(h + TZ_OF_COUNTRY[country]) % 24] += n
    chat = local["chat_user"] / local["chat_user"].sum()
    night, evening = chat[2:6].sum(), chat[19:23].sum()
    assert evening > 3 * night, (evening, night)
    batch = np.zeros(24)
    for persona, _, h, n in rows:
        if persona == "enterprise_batch":
            batch[int(h)] += n
    batch = batch / batch.sum()
    assert 0.12 < batch[0:6].sum() < 0.40  # a quarter of the day, give or take bursts
    assert batch[0:6].sum() > 2 * chat[0:6].sum()

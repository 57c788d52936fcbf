"""Case table for bench/signup.py: every replacement of an already-detected campaign, with what
was known at its checkpoint (reads a finished replay's `decisions.parquet`).

    .venv/bin/python bench/signup_cases.py bench/out/signup/evasive-602 [more run folders]

Per replacement: checkpoint used, campaign accounts flagged then, sign-up day (from the window
start), days until its first request, tier, e-mail domain, country, how many accounts had used its
sign-up IP in traffic before the checkpoint, how many campaign mates ever use that IP, the
evidence the check found and its decision. Prints Markdown rows.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import duckdb

DAY_MS = 86_400_000


def _day_name(day: float) -> str:
    return f"day{int(day):02d}" if float(day).is_integer() else f"day{day:04.1f}"


def cases(root: Path) -> list[str]:
    sim = root / "sim"
    start = datetime.fromisoformat(json.loads((sim / "truth.json").read_text())["start"])
    start_ms = int(start.timestamp() * 1000)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW labels AS SELECT * FROM read_parquet('{sim}/labels.parquet')")
    rows = con.sql(
        f"""
        SELECT d.account_id, d.true_campaign, d.checkpoint_day, d.decision, d.evidence, a.tier,
               a.email_domain, a.signup_ip, a.country, s.persona,
               epoch_ms(a.created_at) AS created, epoch_ms(s.first_use) AS first_use
        FROM read_parquet('{root}/decisions.parquet') d
        JOIN read_parquet('{sim}/accounts.parquet') a USING (account_id)
        JOIN read_parquet('{sim}/signups.parquet') s USING (account_id)
        WHERE d.replacement AND d.campaign_detected ORDER BY created
        """
    ).fetchall()
    out = []
    for aid, camp, day, decision, ev, tier, dom, ip, country, persona, created, first in rows:
        det = root / f"detect-{_day_name(day)}"
        seen = con.execute(
            f"SELECT count(DISTINCT account_id) FROM read_parquet('{det}/work/enriched.parquet') "
            "WHERE client_ip = ?",
            [ip],
        ).fetchall()[0][0]
        flagged = con.execute(
            f"SELECT count(*) FROM read_parquet('{det}/accounts.parquet') v JOIN labels l "
            "USING (account_id) WHERE v.campaign_id IS NOT NULL AND l.campaign_id = ?",
            [camp],
        ).fetchall()[0][0]
        mates = con.execute(
            f"SELECT count(DISTINCT e.account_id) FROM read_parquet('{sim}/events.parquet') e "
            "JOIN labels l USING (account_id) WHERE e.client_ip = ? AND l.campaign_id = ? "
            "AND e.account_id <> ?",
            [ip, camp, aid],
        ).fetchall()[0][0]
        out.append(
            f"| {root.name.rsplit('-', 1)[-1]} | {persona} | {day:g} | {flagged} | "
            f"{(created - start_ms) / DAY_MS:.1f} | {(first - created) / DAY_MS:.1f} | {tier} | "
            f"{dom} | {country} | {seen} | {mates} | {', '.join(ev) or '-'} | {decision} |"
        )
    con.close()
    return out


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        print("\n".join(cases(Path(folder))))

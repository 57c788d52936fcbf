"""The simulator's sign-up ground truth (signups.parquet) agrees with its accounts and labels."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from distillguard.simulate import simulate


def test_signups_truth_marks_replacements_and_batches(tmp_path: Path) -> None:
    simulate("small", seed=3, scale=0.5, out=tmp_path)
    truth = pq.read_table(tmp_path / "signups.parquet")
    assert "email" not in truth.column_names
    con = duckdb.connect()
    for name in ("signups", "accounts", "labels"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM '{tmp_path}/{name}.parquet'")
    n_acc = con.execute("SELECT count(*) FROM accounts").fetchall()[0][0]
    same = con.execute(
        "SELECT count(*) FROM signups s JOIN accounts a USING (account_id) "
        "JOIN labels l USING (account_id) WHERE s.created_at = a.created_at "
        "AND s.persona = l.persona AND s.campaign_id IS NOT DISTINCT FROM l.campaign_id"
    ).fetchall()[0][0]
    assert same == n_acc == truth.num_rows
    # replacement <=> attacker created after its campaign's first planned use
    wrong = con.execute(
        "SELECT count(*) FROM signups WHERE replacement <> coalesce("
        "campaign_id IS NOT NULL AND created_at > campaign_start, false)"
    ).fetchall()[0][0]
    assert wrong == 0
    starts = con.execute(
        "SELECT campaign_id, min(first_use) = any_value(campaign_start) FROM signups "
        "WHERE campaign_id IS NOT NULL GROUP BY 1"
    ).fetchall()
    assert starts and all(ok for _, ok in starts)
    # batch sign-up runs only for batch-registered attackers; benign accounts never have one
    batches = dict(
        con.execute(
            "SELECT campaign_id IS NOT NULL, count(signup_batch) FROM signups GROUP BY 1"
        ).fetchall()
    )
    assert batches[False] == 0 and batches[True] > 0
    assert con.execute("SELECT count(*) FROM signups WHERE first_use < created_at").fetchall() == [
        (0,)
    ]

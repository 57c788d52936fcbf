import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.fingerprints.account import account_fingerprints
from tests.enriched_factory import DAY, T0, enriched


def _fp(table: pa.Table, releases: pa.Table | None = None) -> dict[str, dict]:
    be = ibis.duckdb.connect()
    e = be.create_table("e", table)
    rel = be.create_table("r", releases) if releases is not None else None
    rows = account_fingerprints(e, releases=rel).to_pyarrow().to_pylist()
    return {r["account_id"]: r for r in rows}


def _with_hours(table: pa.Table, hours: np.ndarray) -> pa.Table:
    ts = T0 + (np.arange(table.num_rows) % 20) * DAY + hours * 3_600_000
    table = table.set_column(table.schema.get_field_index("ts_ms"), "ts_ms", pa.array(ts))
    table = table.set_column(table.schema.get_field_index("day"), "day", pa.array(ts // DAY))
    return table.set_column(
        table.schema.get_field_index("hour"), "hour", pa.array((ts % DAY) // 3_600_000)
    )


def test_round_the_clock_pipeline_has_higher_hour_entropy_than_office_hours():
    rng = np.random.default_rng(0)
    pipeline = _with_hours(enriched(["bot"], 500, seed=1), rng.integers(0, 24, 500))
    human = _with_hours(enriched(["person"], 500, seed=2), rng.integers(9, 18, 500))
    fp = _fp(pa.concat_tables([pipeline, human]))
    assert fp["bot"]["hour_entropy"] > 4.3
    assert fp["person"]["hour_entropy"] < 3.3
    assert fp["bot"]["night_share"] > 0.15 > fp["person"]["night_share"]


def test_rotating_residential_addresses_show_as_home_ip_churn():
    rotating = enriched(["hydra"], 200, ips=[f"198.51.100.{i}" for i in range(200)], seed=3)
    steady = enriched(["home"], 200, seed=4)  # one address for all its requests
    fp = _fp(pa.concat_tables([rotating, steady]))
    assert fp["hydra"]["home_ips_per_request"] > 0.5
    assert fp["home"]["home_ips_per_request"] < 0.01


def test_vpn_hopping_is_not_counted_as_home_ip_churn():
    vpn = enriched(["vpn"], 200, ips=[f"203.0.113.{i}" for i in range(200)], ip_kind="vpn")
    fp = _fp(vpn)
    assert fp["vpn"]["home_ips_per_request"] == 0
    assert fp["vpn"]["vpn_share"] == 1.0


def test_volume_and_extraction_shares():
    t = enriched(["a"], 100, cot=0.5, days=5, seed=5)
    fp = _fp(t)["a"]
    assert fp["requests"] == 100
    assert fp["req_per_day"] == 100 / fp["active_days"]
    assert abs(fp["cot_share"] - pc.mean(t["cot"].cast(pa.float64())).as_py()) < 1e-9


def test_adoption_lag_is_hours_from_release_to_first_use():
    t = enriched(["early"], 10, seed=6)
    t = t.set_column(t.schema.get_field_index("model"), "model", pa.array(["new"] * 10))
    first = pc.min(t["ts_ms"]).as_py()
    releases = pa.table({"model": ["new"], "released_ms": [first - 5 * 3_600_000]})
    fp = _fp(t, releases)["early"]
    assert abs(fp["adopt_lag_h"] - 5.0) < 1e-6

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from distillguard.clusters.leiden import communities
from distillguard.fingerprints.account import account_fingerprints
from distillguard.links.evidence import evidence
from distillguard.links.graph import account_order, edges
from distillguard.links.twins import twin_edges, with_twins
from distillguard.scoring.risk import DEFAULT_THRESHOLD, _content_corroboration, score
from tests.enriched_factory import enriched


def _population() -> pa.Table:
    hydra = enriched([f"h{i:02d}" for i in range(12)], 60, templates=[11, 12, 13],
                     ips=[f"203.0.113.{i}" for i in range(60)], ip_kind="proxy",
                     cot=0.6, synced=True, seed=1)
    nat = enriched([f"n{i:02d}" for i in range(15)], 40, ips=["198.51.100.1"], sys_id=777,
                   seed=2)
    solo = enriched([f"s{i:02d}" for i in range(20)], 50, cot=0.02, seed=3)
    return pa.concat_tables([hydra, nat, solo])


@pytest.fixture(scope="module")
def scored() -> pa.Table:
    table = _population()
    be = ibis.duckdb.connect()
    e = be.create_table("e", table)
    fp = account_fingerprints(e).to_pyarrow()
    order = be.create_table("o", account_order(fp["account_id"]))
    g = with_twins(edges(evidence(e, None, order), order, fp.num_rows).to_pyarrow(), twin_edges(fp))
    return score(fp, g, communities(fp["account_id"], g)).accounts


def _group(t: pa.Table, prefix: str) -> pa.Table:
    return t.filter(pc.starts_with(t["account_id"], prefix))


def test_coordinated_extraction_cluster_is_flagged_with_reasons(scored):
    hydra = _group(scored, "h")
    assert pc.all(hydra["flagged"]).as_py()
    assert len(set(hydra["cluster"].to_pylist())) == 1
    reasons = " | ".join(hydra["reasons"][0].as_py())
    assert "linked accounts" in reasons and "chain-of-thought" in reasons


def test_company_behind_one_nat_is_not_flagged(scored):
    nat = _group(scored, "n")
    assert not pc.any(nat["flagged"]).as_py()
    assert pc.max(nat["risk"]).as_py() < DEFAULT_THRESHOLD


def test_unlinked_ordinary_accounts_stay_low(scored):
    solo = _group(scored, "s")
    assert not pc.any(solo["flagged"]).as_py()
    assert pc.max(solo["risk"]).as_py() < pc.min(_group(scored, "h")["risk"]).as_py()


def test_risk_is_a_probability_and_every_account_is_scored(scored):
    assert scored.num_rows == 12 + 15 + 20
    assert pc.min(scored["risk"]).as_py() >= 0.0 and pc.max(scored["risk"]).as_py() <= 1.0


def _content_edges(pairs: list[tuple[int, int, float]]) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    w = np.array([p[2] for p in pairs])
    zeros = np.zeros(len(pairs))
    table = pa.table({"w_template": zeros, "w_wrapper": zeros, "w_sentence": w})
    return table, a, b


def test_cover_account_sharing_the_prompt_library_inherits_cluster_risk():
    # Account 0 asks for nothing itself but shares 8% of its prompts with two working members.
    table, a, b = _content_edges([(0, 1, 0.08), (0, 2, 0.08), (1, 2, 0.5)])
    cl = np.zeros(3, dtype=np.int64)
    own = np.array([0.0, 0.3, 0.3])
    fit = _content_corroboration(table, a, b, cl, own)
    assert fit[0] == pytest.approx(1.0)


def test_bystander_with_scattered_boilerplate_inherits_nothing():
    # Account 0 shares 2% boilerplate with 20 working members, and 50% with one in another
    # cluster: neither makes it part of this cluster's operation.
    pairs = [(0, i, 0.02) for i in range(1, 21)] + [(0, 21, 0.5)]
    table, a, b = _content_edges(pairs)
    cl = np.array([0] * 21 + [1], dtype=np.int64)
    own = np.array([0.0] + [0.3] * 21)
    fit = _content_corroboration(table, a, b, cl, own)
    assert fit[0] == 0.0

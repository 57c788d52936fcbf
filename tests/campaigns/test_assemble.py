import pyarrow as pa

from distillguard.campaigns.assemble import assign_campaigns


def _accounts(spec: dict[str, tuple[int, bool]]) -> pa.Table:
    ids = sorted(spec)
    return pa.table(
        {
            "account_id": ids,
            "cluster": [spec[i][0] for i in ids],
            "flagged": [spec[i][1] for i in ids],
        }
    )


def _edges(rows: list[tuple[str, str, float]]) -> pa.Table:
    return pa.table(
        {"a": [r[0] for r in rows], "b": [r[1] for r in rows], "weight": [r[2] for r in rows]}
    )


def _requests(ids: list[str], n: dict[str, int]) -> pa.Table:
    return pa.table({"account_id": ids, "requests": [n.get(i, 1) for i in ids]})


def test_pieces_mostly_strongly_linked_become_one_campaign():
    spec = {f"x{i}": (0, True) for i in range(4)} | {f"y{i}": (1, True) for i in range(4)}
    links = [(f"x{i}", f"y{i}", 1.0) for i in range(3)]  # 3 of 4 members linked across
    out = assign_campaigns(_accounts(spec), _edges(links), _requests(sorted(spec), {}))
    assert len(set(out["campaign_id"].to_pylist())) == 1


def test_faintly_linked_clusters_stay_separate_and_are_named_by_volume():
    spec = {f"x{i}": (0, True) for i in range(4)} | {f"y{i}": (1, True) for i in range(3)}
    links = [("x0", "y0", 1.0), ("x1", "y1", 0.1)]  # one strong link of four/three members
    volume = {f"y{i}": 100 for i in range(3)}
    out = assign_campaigns(_accounts(spec), _edges(links), _requests(sorted(spec), volume))
    names = dict(zip(out["account_id"].to_pylist(), out["campaign_id"].to_pylist(), strict=True))
    assert names["y0"] == "campaign-01"  # the larger volume comes first
    assert names["x0"] == "campaign-02"


def test_shared_prompt_library_merges_clusters():
    spec = {f"x{i}": (0, True) for i in range(3)} | {f"y{i}": (1, True) for i in range(3)}
    sim = pa.table({"c1": [0], "c2": [1], "view": ["sentence"], "similarity": [0.3]})
    out = assign_campaigns(_accounts(spec), _edges([]), _requests(sorted(spec), {}), sim)
    assert len(set(out["campaign_id"].to_pylist())) == 1


def test_unflagged_and_lone_accounts_get_no_campaign():
    spec = {"a": (0, True), "b": (0, False), "c": (1, True)}
    out = assign_campaigns(_accounts(spec), _edges([]), _requests(sorted(spec), {}))
    names = dict(zip(out["account_id"].to_pylist(), out["campaign_id"].to_pylist(), strict=True))
    assert names == {"a": None, "b": None, "c": None}

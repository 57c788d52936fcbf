"""Supervised mode: trained on one simulated seed, it finds the campaigns of another.

Two `small` runs (seeds 21 and 22, about 280 accounts with 36 attackers each) are simulated and
detected once for the module. A model that guessed would flag attackers at their base rate (~13%
precision); the floors below are far above that.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from distillguard.contract import DETECTED_ACCOUNTS
from distillguard.errors import UserError
from distillguard.pipeline.detect import DetectConfig, run_detect
from distillguard.scoring import supervised as sv
from distillguard.simulate import simulate
from tests.cli_runner import run_cli


def _simulated_run(base: Path, seed: int) -> tuple[Path, Path]:
    """Simulate and detect once, even when several xdist workers ask for it at the same time."""
    base.mkdir(parents=True, exist_ok=True)
    sim, detect, done = base / "sim", base / "detect", base / "done"
    with open(base / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            simulate("small", seed=seed, out=sim)
            run_detect(DetectConfig.for_simulation(sim, detect))
            done.touch()
    return sim, detect


@pytest.fixture(scope="module")
def runs(tmp_path_factory, worker_id: str) -> dict[int, tuple[Path, Path]]:
    root = tmp_path_factory.getbasetemp()
    shared = root if worker_id == "master" else root.parent  # shared by the xdist workers
    return {seed: _simulated_run(shared / f"supervised-small-{seed}", seed) for seed in (21, 22)}


@pytest.fixture(scope="module")
def bundle(runs) -> sv.Bundle:
    sim, detect = runs[21]
    return sv.fit_bundle(sv.training_set([detect], [sim / "labels.parquet"]))


def _truth(sim: Path, ids: pa.ChunkedArray) -> np.ndarray:
    labels = sv.read_labels(sim / "labels.parquet")
    attackers = pc.filter(labels["account_id"], labels["label"])
    return pc.is_in(ids, value_set=attackers).to_numpy(zero_copy_only=False)


def test_model_from_one_seed_finds_the_campaigns_of_another(runs, bundle):
    sim, detect = runs[22]
    table = sv.apply_model(bundle, detect)
    y = _truth(sim, table["account_id"])
    flagged = table["supervised_flagged"].to_numpy(zero_copy_only=False)
    precision = (flagged & y).sum() / max(flagged.sum(), 1)
    recall = (flagged & y).sum() / y.sum()
    assert y.mean() < 0.2  # the floors below are far above what guessing reaches
    assert precision >= 0.8
    assert recall >= 0.8
    risk = table["supervised_risk"].to_numpy()
    assert risk[y].mean() > risk[~y].mean() + 0.5


def test_flagged_accounts_name_features_far_from_benign(runs, bundle):
    _, detect = runs[22]
    table = sv.apply_model(bundle, detect)
    ids, cols = sv.run_features(detect)
    assert table["account_id"].equals(pa.chunked_array([ids]))
    named = 0
    for i, (flag, reason, feats) in enumerate(
        zip(*(table[c].to_pylist() for c in ("supervised_flagged", "reason", "top_features")),
            strict=True)
    ):  # fmt: skip
        assert reason.startswith("supervised model ")
        assert len(feats) <= (sv.TOP_REASONS if flag else 0)
        for f in feats:
            j = bundle.features.index(f)
            spread = abs(cols[f][i] - bundle.benign_median[j]) / bundle.benign_scale[j]
            assert f in reason and spread >= sv.NOTABLE
        named += bool(feats)
    flagged = pc.sum(table["supervised_flagged"]).as_py()
    assert flagged > 0 and named >= 0.8 * flagged


def test_cross_validation_holds_out_whole_clusters(runs):
    sim, detect = runs[21]
    ts = sv.training_set([detect], [sim / "labels.parquet"])
    cv = sv.cross_validate(ts, folds=2)
    assert cv["folds"] == 2 and cv["grouped_by"] == "clusters"
    assert 0.5 < cv["auc"] <= 1.0
    assert cv["accounts"] == len(ts.y) and cv["positives"] == int(ts.y.sum())
    own = sv.training_set([detect], [sim / "labels.parquet"], exclude=("unsup_", "cluster_"))
    assert own.features and not [f for f in own.features if f.startswith(("unsup_", "cluster_"))]
    assert set(own.features) < set(ts.features) and own.x.shape == (len(ts.y), len(own.features))


def test_boolean_label_csv_matches_campaign_labels(runs, tmp_path):
    sim, _ = runs[21]
    labels = pq.read_table(sim / "labels.parquet")
    path = tmp_path / "labels.csv"
    pacsv.write_csv(
        pa.table(
            {"account_id": labels["account_id"], "label": pc.is_valid(labels["campaign_id"])}
        ),
        path,
    )
    assert sv.read_labels(path).equals(sv.read_labels(sim / "labels.parquet"))


def test_cli_train_then_rescore_with_replace(runs, tmp_path, monkeypatch, capsys):
    sim21, detect21 = runs[21]
    _, detect22 = runs[22]
    model = tmp_path / "model.joblib"
    code, out, _ = run_cli(
        ["train", "--run", str(detect21), "--labels", str(sim21 / "labels.parquet"),
         "--out", str(model), "--folds", "2"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert code == 0, out
    assert "auc" in out and model.exists()

    run = tmp_path / "run"
    shutil.copytree(detect22, run)
    before = pq.read_table(run / "accounts.parquet")
    for _ in range(2):  # twice: the second replace starts again from the detect output
        code, out, err = run_cli(
            ["rescore", "--run", str(run), "--model", str(model), "--replace"], monkeypatch, capsys
        )
        assert code == 0, err
    supervised = pq.read_table(run / sv.SUPERVISED_FILE)
    assert supervised.schema.equals(sv.OUTPUT_SCHEMA, check_metadata=False)
    after = pq.read_table(run / "accounts.parquet")
    assert after.schema.equals(DETECTED_ACCOUNTS, check_metadata=False)
    assert after["account_id"].equals(before["account_id"])
    assert after["campaign_id"].equals(before["campaign_id"])
    reasons_before, reasons_after = before["reasons"].to_pylist(), after["reasons"].to_pylist()
    assert all(
        a[0].startswith("supervised model") and a[1:] == b
        for a, b in zip(reasons_after, reasons_before, strict=True)
    )
    ids, risks = supervised["account_id"].to_pylist(), supervised["supervised_risk"].to_pylist()
    by_id = dict(zip(ids, risks, strict=True))
    assert [by_id[a] for a in after["account_id"].to_pylist()] == after["risk"].to_pylist()
    assert pq.read_table(run / sv.UNSUPERVISED_BACKUP).equals(before)
    assert json.loads((run / "summary.json").read_text())["supervised"]["replaced_accounts"]


def _one_line_exit_2(args, monkeypatch, capsys) -> str:
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


def test_missing_run_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    err = _one_line_exit_2(
        ["train", "--run", str(tmp_path / "nope"), "--labels", str(tmp_path / "l.parquet"),
         "--out", str(tmp_path / "m")],
        monkeypatch, capsys,
    )  # fmt: skip
    assert "missing" in err


def test_labels_without_overlap_are_a_one_line_error(runs, tmp_path, monkeypatch, capsys):
    _, detect = runs[21]
    path = tmp_path / "labels.csv"
    pacsv.write_csv(pa.table({"account_id": ["x1", "x2"], "label": [True, False]}), path)
    err = _one_line_exit_2(
        ["train", "--run", str(detect), "--labels", str(path), "--out", str(tmp_path / "m")],
        monkeypatch, capsys,
    )  # fmt: skip
    assert "no account" in err


def test_single_class_labels_are_a_one_line_error(runs, tmp_path, monkeypatch, capsys):
    sim, detect = runs[21]
    ids = pq.read_table(sim / "labels.parquet")["account_id"]
    path = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"account_id": ids, "campaign_id": pa.nulls(len(ids), pa.string())}),
                   path)  # fmt: skip
    err = _one_line_exit_2(
        ["train", "--run", str(detect), "--labels", str(path), "--out", str(tmp_path / "m")],
        monkeypatch, capsys,
    )  # fmt: skip
    assert "both classes" in err


def test_model_with_other_features_is_refused(runs, bundle, tmp_path, monkeypatch, capsys):
    _, detect = runs[22]
    bundle.features.append("feature_from_the_future")
    try:
        with pytest.raises(UserError, match="lacks 1 feature"):
            sv.apply_model(bundle, detect)
        path = tmp_path / "other.joblib"
        sv.save_bundle(bundle, path)
        with pytest.raises(UserError, match="different features"):
            sv.load_bundle(path, expected_features=bundle.features[:-1])
    finally:
        bundle.features.pop()
    junk = tmp_path / "junk.joblib"
    junk.write_bytes(b"not a model")
    err = _one_line_exit_2(
        ["rescore", "--run", str(detect), "--model", str(junk)], monkeypatch, capsys
    )
    assert "model" in err

"""Optional supervised scoring: gradient boosting trained on labelled detect runs.

The unsupervised pass (`scoring.risk`) needs no labels and reaches the goals on its own. When a
provider has confirmed cases, this mode learns from them: one row per account with

- the account's fingerprint (`work/fingerprints.parquet`: every numeric column except absolute
  timestamps, booleans as 0/1, the contract's tiers one-hot);
- its unsupervised context (`work/scores.parquet`: risk and behaviour) and its cluster's
  evidence (`work/clusters.parquet`, joined by cluster, prefixed `cluster_`).

Labels are a Parquet or CSV file with `account_id` and either `label` (bool) or `campaign_id`
(null or empty = benign; the simulator's `labels.parquet`). The model is scikit-learn's
HistGradientBoostingClassifier with balanced class weights and a fixed seed, saved with joblib
together with its feature names and a format version. Loading runs pickle: load only models you
trained yourself.

Explanations are deliberately simple: among the model's most important features (the summed
split gains of its trees, computed once at training time), each account's reason names those
furthest from the benign accounts' median, in units of the benign spread.

Fitting and predicting run on one OpenMP thread: on a shared, oversubscribed machine, OpenMP's
spinning barriers made two threads 2x slower to fit and 200x slower to predict than one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import precision_score, recall_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from threadpoolctl import threadpool_limits

from distillguard.contract import DETECTED_ACCOUNTS
from distillguard.errors import UserError

BUNDLE_FORMAT = "distillguard-supervised"
BUNDLE_VERSION = 1
RANDOM_STATE = 0
DEFAULT_FOLDS = 5
TIERS = ("free", "pro", "team", "enterprise", "edu", "startup", "research")  # contract section 2
# Absolute times say when a run was simulated or collected, not how an account behaves.
EXCLUDED_FINGERPRINT_COLUMNS = frozenset({"account_id", "first_ms", "last_ms", "tier"})
CONTEXT_COLUMNS = ("risk", "behaviour")
GROUP_KEY = "unsup_cluster"  # for grouped cross-validation only: an id, never a feature
TOP_IMPORTANT = 12  # features considered for an account's explanation
TOP_REASONS = 3  # features named per account
OUTPUT_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("supervised_risk", pa.float64()),
        ("supervised_flagged", pa.bool_()),
        ("risk", pa.float64()),
        ("flagged", pa.bool_()),
        ("top_features", pa.list_(pa.string())),
        ("reason", pa.string()),
    ]
)


@dataclass
class Bundle:
    """A trained model with everything needed to apply and explain it."""

    model: HistGradientBoostingClassifier
    features: list[str]
    importance: np.ndarray  # per feature: share of the trees' summed split gain
    benign_median: np.ndarray  # per feature
    benign_scale: np.ndarray  # per feature: benign interquartile range (or a floor)
    cv: dict[str, Any] = field(default_factory=dict)
    trained_on: list[str] = field(default_factory=list)
    version: int = BUNDLE_VERSION
    sklearn_version: str = sklearn.__version__


# ---------------------------------------------------------------- features


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise UserError(f"missing {what}: {path}")
    return path


def _read_parquet(path: Path, what: str) -> pa.Table:
    try:
        return pq.read_table(_require(path, what))
    except UserError:
        raise
    except Exception as exc:  # unreadable file is the user's input problem
        raise UserError(f"cannot read {what} {path}: {exc}") from exc


def _positions(ids: pa.Array, keys: pa.ChunkedArray, where: Path) -> np.ndarray:
    """Row of each id in `keys`; an id missing from `keys` is an inconsistent run."""
    at = pc.index_in(ids, value_set=keys.combine_chunks())
    if at.null_count:
        raise UserError(f"{where} does not cover every fingerprinted account")
    return at.to_numpy(zero_copy_only=False).astype(np.int64)


def _numeric(column: pa.ChunkedArray) -> np.ndarray | None:
    """A column as float64 (nulls -> NaN), or None when it is not numeric or boolean."""
    t = column.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        return None
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)


RUN_FILES = {
    "fingerprints.parquet": "fingerprints",
    "scores.parquet": "unsupervised scores",
    "clusters.parquet": "cluster evidence",
}


def require_run(run_dir: Path) -> None:
    """A detect run's work tables exist (checked before any progress display starts)."""
    for name, what in RUN_FILES.items():
        _require(Path(run_dir) / "work" / name, what)


def run_features(run_dir: Path) -> tuple[pa.Array, dict[str, np.ndarray]]:
    """Account ids (sorted) and named feature columns of one detect run's `work/` tables."""
    work = Path(run_dir) / "work"
    fp = _read_parquet(work / "fingerprints.parquet", "fingerprints").sort_by("account_id")
    scores = _read_parquet(work / "scores.parquet", "unsupervised scores")
    clusters = _read_parquet(work / "clusters.parquet", "cluster evidence")
    ids = fp["account_id"].combine_chunks()

    cols: dict[str, np.ndarray] = {}
    for name in fp.column_names:
        values = None if name in EXCLUDED_FINGERPRINT_COLUMNS else _numeric(fp[name])
        if values is not None:
            cols[name] = values
    tier = fp["tier"] if "tier" in fp.column_names else pa.nulls(fp.num_rows, pa.string())
    for value in TIERS:
        cols[f"tier_{value}"] = (
            pc.fill_null(pc.equal(tier, value), False).to_numpy(zero_copy_only=False).astype(float)
        )

    # Align per-account context and per-cluster evidence to the sorted fingerprint rows.
    at = _positions(ids, scores["account_id"], work / "scores.parquet")
    for name in CONTEXT_COLUMNS:
        cols[f"unsup_{name}"] = _numeric(scores[name])[at]
    cluster = scores["cluster"].to_numpy()[at]
    cols[GROUP_KEY] = cluster.astype(float)
    known = clusters["cluster"].to_numpy()
    row = np.full(int(max(cluster.max(initial=0), known.max(initial=0))) + 1, -1)
    row[known] = np.arange(clusters.num_rows)  # cluster id -> its row in clusters.parquet
    for name in clusters.column_names:
        values = None if name == "cluster" else _numeric(clusters[name])
        if values is not None:
            cols[f"cluster_{name}"] = np.where(row[cluster] >= 0, values[row[cluster]], np.nan)
    return ids, cols


def feature_matrix(cols: dict[str, np.ndarray], features: list[str], where: Path) -> np.ndarray:
    """The columns a model was trained on, in its order; missing ones are a user error."""
    missing = [f for f in features if f not in cols]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise UserError(
            f"run {where} lacks {len(missing)} feature(s) the model was trained on ({shown}); "
            "retrain the model on runs from this version"
        )
    return np.column_stack([cols[f] for f in features]) if features else np.empty((0, 0))


# ---------------------------------------------------------------- labels


def labels_path(path: Path) -> Path:
    """The labels file itself: a simulator output directory means its labels.parquet."""
    path = Path(path)
    return _require(path / "labels.parquet" if path.is_dir() else path, "labels")


def read_labels(path: Path) -> pa.Table:
    """`account_id` and a boolean `label` from Parquet or CSV (`label` or `campaign_id`)."""
    path = labels_path(path)
    try:
        if path.suffix.lower() == ".csv":
            table = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types={"account_id": pa.string(), "campaign_id": pa.string()},
                    strings_can_be_null=True,
                ),
            )
        else:
            table = pq.read_table(path)
    except Exception as exc:
        raise UserError(f"cannot read labels {path}: {exc}") from exc
    if "account_id" not in table.column_names:
        raise UserError(f"labels {path} lack an account_id column")
    if "label" in table.column_names:
        try:
            label = pc.cast(table["label"], pa.bool_())
        except pa.ArrowInvalid as exc:
            raise UserError(f"labels {path}: column label is not boolean ({exc})") from exc
        if label.null_count:
            raise UserError(f"labels {path}: {label.null_count} row(s) with an empty label")
    elif "campaign_id" in table.column_names:
        campaign = pc.cast(table["campaign_id"], pa.string())
        label = pc.fill_null(pc.not_equal(campaign, ""), False)
    else:
        raise UserError(f"labels {path} need a label or a campaign_id column")
    return pa.table({"account_id": pc.cast(table["account_id"], pa.string()), "label": label})


def labelled_rows(
    ids: pa.Array, labels: pa.Table, run: Path, source: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the run's labelled accounts and their labels; no overlap is an error."""
    pos = pc.index_in(labels["account_id"], value_set=ids)
    known = pc.is_valid(pos)
    if not pc.any(known).as_py():
        raise UserError(f"no account of {source} appears in run {run}")
    rows = pc.filter(pos, known).to_numpy(zero_copy_only=False).astype(np.int64)
    y = pc.filter(labels["label"], known).to_numpy(zero_copy_only=False).astype(bool)
    return rows, y


# ---------------------------------------------------------------- training


def new_model() -> HistGradientBoostingClassifier:
    """Small trees, balanced class weights, no early stopping: deterministic on few rows."""
    return HistGradientBoostingClassifier(
        max_iter=100,
        max_bins=63,
        learning_rate=0.1,
        max_leaf_nodes=15,
        min_samples_leaf=10,
        l2_regularization=1.0,
        class_weight="balanced",
        early_stopping=False,
        random_state=RANDOM_STATE,
    )


@dataclass
class TrainingSet:
    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray  # run and cluster of each row, for grouped cross-validation
    features: list[str]
    runs: list[str]


def training_set(
    runs: list[Path], labels: list[Path], exclude: tuple[str, ...] = ()
) -> TrainingSet:
    """Rows of every labelled account of every run; one labels file per run, or one for all.

    `exclude`: feature-name prefixes to leave out (e.g. ("unsup_", "cluster_") for the
    account's own fingerprint only).
    """
    if not runs:
        raise UserError("give at least one --run")
    if len(labels) not in (1, len(runs)):
        raise UserError(f"give one labels file, or one per run ({len(runs)}); got {len(labels)}")
    pairs = zip(runs, labels * len(runs) if len(labels) == 1 else labels, strict=False)
    parts, features = [], None
    for i, (run, source) in enumerate(pairs):
        ids, cols = run_features(Path(run))
        names = sorted(c for c in cols if c != GROUP_KEY and not c.startswith(exclude))
        features = names if features is None else features
        if names != features:
            raise UserError(f"run {run} has different feature columns from {runs[0]}")
        rows, y = labelled_rows(ids, read_labels(Path(source)), Path(run), Path(source))
        x = feature_matrix(cols, features, Path(run))[rows]
        cluster = cols[GROUP_KEY][rows].astype(np.int64)
        parts.append((x, y, np.char.add(f"{i}:", cluster.astype(str))))
    x = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    if y.all() or not y.any():
        kind = "campaign" if y.all() else "benign"
        raise UserError(f"labels hold only {kind} accounts: training needs both classes")
    groups = np.concatenate([p[2] for p in parts])
    return TrainingSet(x, y, groups, features or [], [str(r) for r in runs])


def _splitter(ts: TrainingSet, folds: int):
    """Folds that hold out whole clusters: no cluster is in training and test at once.

    Stricter than random folds (which put members of one campaign on both sides) and closer
    to meeting a new campaign; falls back to account folds when there are too few clusters.
    """
    pos_groups = np.unique(ts.groups[ts.y]).size
    neg_groups = np.unique(ts.groups[~ts.y]).size
    k = min(folds, pos_groups, neg_groups)
    if k >= 2:
        return StratifiedGroupKFold(k, shuffle=True, random_state=RANDOM_STATE), "clusters", k
    k = min(folds, int(ts.y.sum()), int((~ts.y).sum()))
    if k < 2:
        return None, "none", 0
    return StratifiedKFold(k, shuffle=True, random_state=RANDOM_STATE), "accounts", k


def cross_validate(ts: TrainingSet, folds: int = DEFAULT_FOLDS, threshold: float = 0.5) -> dict:
    """Out-of-fold AUC, precision and recall at `threshold`."""
    splitter, unit, k = _splitter(ts, folds)
    if splitter is None:
        return {"folds": 0, "note": "too few labelled accounts per class to cross-validate"}
    oof = np.full(len(ts.y), np.nan)
    for train, test in splitter.split(ts.x, ts.y, ts.groups):
        with threadpool_limits(1):
            model = new_model().fit(ts.x[train], ts.y[train])
            oof[test] = model.predict_proba(ts.x[test])[:, 1]
    predicted = oof >= threshold
    return {
        "folds": k,
        "grouped_by": unit,
        "auc": round(float(roc_auc_score(ts.y, oof)), 4),
        "precision": round(float(precision_score(ts.y, predicted, zero_division=0)), 4),
        "recall": round(float(recall_score(ts.y, predicted, zero_division=0)), 4),
        "threshold": threshold,
        "accounts": len(ts.y),
        "positives": int(ts.y.sum()),
    }


def _benign_spread(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    benign = x[~y]
    med = np.nan_to_num(np.nanmedian(benign, axis=0))
    q1, q3 = np.nanpercentile(benign, [25, 75], axis=0)
    iqr = np.nan_to_num(q3 - q1)
    # A floor so that a feature constant among benign accounts (0 for most) still has a unit.
    floor = np.maximum(np.nan_to_num(np.nanstd(benign, axis=0)), 1e-3)
    return med, np.where(iqr > 0, iqr, floor)


def split_gain_importance(model: HistGradientBoostingClassifier, n: int) -> np.ndarray:
    """Per feature, its share of the summed split gain over all trees (sums to 1).

    The gradient-boosting analogue of other tree models' `feature_importances_`, which
    HistGradientBoostingClassifier does not expose; read from its fitted trees once, at
    training time (the bundle pins the scikit-learn version).
    """
    gain = np.zeros(n)
    for trees in model._predictors:  # one list of trees per boosting iteration
        for tree in trees:
            split = tree.nodes[~tree.nodes["is_leaf"].astype(bool)]
            np.add.at(gain, split["feature_idx"].astype(np.int64), split["gain"])
    return gain / gain.sum() if gain.sum() > 0 else gain


def fit_bundle(ts: TrainingSet, cv: dict | None = None) -> Bundle:
    """Fit on every labelled row; importance and the benign spread for explanations."""
    with threadpool_limits(1):
        model = new_model().fit(ts.x, ts.y)
    med, scale = _benign_spread(ts.x, ts.y)
    return Bundle(
        model=model,
        features=list(ts.features),
        importance=split_gain_importance(model, len(ts.features)),
        benign_median=med,
        benign_scale=scale,
        cv=cv or {},
        trained_on=ts.runs,
    )


def train(
    runs: list[Path], labels: list[Path], folds: int = DEFAULT_FOLDS, threshold: float = 0.5
) -> Bundle:
    """Cross-validate, then fit on every labelled account of `runs`."""
    ts = training_set(runs, labels)
    return fit_bundle(ts, cross_validate(ts, folds, threshold))


# ---------------------------------------------------------------- persistence


def save_bundle(bundle: Bundle, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump({"format": BUNDLE_FORMAT, **bundle.__dict__}, path)


def load_bundle(path: Path, expected_features: list[str] | None = None) -> Bundle:
    """A saved bundle; a different format, version or feature list is a user error."""
    path = Path(path)
    _require(path, "model")
    try:
        data = joblib.load(path)
    except Exception as exc:
        raise UserError(f"cannot read model {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise UserError(f"{path} is not a distillguard supervised model")
    if data.get("version") != BUNDLE_VERSION:
        raise UserError(
            f"model {path} has format version {data.get('version')}, this distillguard reads "
            f"{BUNDLE_VERSION}: retrain it"
        )
    if _minor(data.get("sklearn_version", "")) != _minor(sklearn.__version__):
        raise UserError(
            f"model {path} was saved by scikit-learn {data.get('sklearn_version')}, "
            f"this is {sklearn.__version__}: retrain it"
        )
    data.pop("format")
    bundle = Bundle(**data)
    if expected_features is not None and list(expected_features) != bundle.features:
        raise UserError(f"model {path} was trained on different features: retrain it")
    return bundle


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


# ---------------------------------------------------------------- applying


NOTABLE = 1.0  # a feature is named only this many benign spreads or more from the benign median


def explain(bundle: Bundle, x: np.ndarray) -> np.ndarray:
    """Per account, indices of the features named in its reason (most telling first; -1 = none).

    Among the model's TOP_IMPORTANT features, those furthest from the benign median in units
    of the benign spread, weighted by importance; a feature within NOTABLE spreads of the
    median is not named. A cheap description of what sets the account apart, not an exact
    attribution of the model's output.
    """
    ranked = np.argsort(-bundle.importance, kind="stable")[:TOP_IMPORTANT]
    ranked = ranked[bundle.importance[ranked] > 0]
    if ranked.size == 0:
        return np.full((len(x), 0), -1, dtype=np.int64)
    spreads = np.abs(np.nan_to_num(x[:, ranked] - bundle.benign_median[ranked]))
    spreads = spreads / bundle.benign_scale[ranked]
    order = np.argsort(-spreads * bundle.importance[ranked], axis=1, kind="stable")
    order = order[:, :TOP_REASONS]
    picked = ranked[order]
    notable = np.take_along_axis(spreads, order, axis=1) >= NOTABLE
    return np.where(notable, picked, -1)


def _fmt(v: float) -> str:
    if np.isnan(v):
        return "n/a"
    return f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"


def _reasons(
    bundle: Bundle, x: np.ndarray, risk: np.ndarray, top: np.ndarray, threshold: float
) -> tuple[list, list]:
    """Feature names and reason text per account (formatting only; the maths is vectorised).

    Features are named only for accounts at or above the threshold: for the rest, "furthest
    from benign" would describe noise.
    """
    names = np.asarray(bundle.features, dtype=object)
    texts, top_names = [], []
    for i in range(len(x)):
        feats = [int(j) for j in top[i] if j >= 0] if risk[i] >= threshold else []
        top_names.append(names[feats].tolist())
        parts = [
            f"{names[j]} {_fmt(x[i, j])} (benign median {_fmt(bundle.benign_median[j])})"
            for j in feats
        ]
        detail = f" (top features: {', '.join(parts)})" if parts else ""
        texts.append(f"supervised model {risk[i]:.2f}{detail}")
    return top_names, texts


def apply_model(bundle: Bundle, run_dir: Path, threshold: float = 0.5) -> pa.Table:
    """Supervised risk, flag, the unsupervised risk and flag, and a reason for every account."""
    run_dir = Path(run_dir)
    ids, cols = run_features(run_dir)
    x = feature_matrix(cols, bundle.features, run_dir)
    with threadpool_limits(1):
        risk = bundle.model.predict_proba(x)[:, 1] if len(x) else np.empty(0)
    top_names, texts = _reasons(bundle, x, risk, explain(bundle, x), threshold)
    return pa.table(
        {
            "account_id": ids,
            "supervised_risk": pa.array(np.round(risk, 6), pa.float64()),
            "supervised_flagged": pa.array(risk >= threshold, pa.bool_()),
            "risk": pa.array(cols["unsup_risk"], pa.float64()),
            "flagged": _unsupervised_flags(run_dir, ids),
            "top_features": pa.array(top_names, pa.list_(pa.string())),
            "reason": pa.array(texts, pa.string()),
        },
        schema=OUTPUT_SCHEMA,
    )


def _unsupervised_flags(run_dir: Path, ids: pa.Array) -> pa.Array:
    scores = pq.read_table(run_dir / "work" / "scores.parquet", columns=["account_id", "flagged"])
    at = _positions(ids, scores["account_id"], run_dir / "work" / "scores.parquet")
    return pc.take(scores["flagged"].combine_chunks(), pa.array(at))


# ---------------------------------------------------------------- writing a run

SUPERVISED_FILE = "supervised.parquet"
UNSUPERVISED_BACKUP = "accounts.unsupervised.parquet"


def rescore(
    run_dir: Path, bundle: Bundle, threshold: float = 0.5, replace: bool = False
) -> pa.Table:
    """Write `supervised.parquet` into the run; with `replace`, also accounts.parquet's risk.

    accounts.parquet keeps the contract's section-6 schema: `risk` and `flagged` become the
    supervised ones and the supervised reason goes first in `reasons`. The detect output is
    kept as accounts.unsupervised.parquet (and re-read from there, so rescoring twice does
    not stack reasons). `campaign_id` and campaigns.parquet are left as detect wrote them.
    """
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold must be within [0, 1], got {threshold}")
    run_dir = Path(run_dir)
    table = apply_model(bundle, run_dir, threshold)
    pq.write_table(table, run_dir / SUPERVISED_FILE)
    if replace:
        _replace_accounts(run_dir, table)
    _note_in_summary(run_dir, table, threshold, replace)
    return table


def _replace_accounts(run_dir: Path, supervised: pa.Table) -> None:
    backup = run_dir / UNSUPERVISED_BACKUP
    source = backup if backup.exists() else run_dir / "accounts.parquet"
    original = _read_parquet(source, "detected accounts")
    if not backup.exists():
        pq.write_table(original, backup)
    ids = original["account_id"].combine_chunks()
    at = _positions(ids, supervised["account_id"], run_dir / SUPERVISED_FILE)
    picked = supervised.take(pa.array(at))
    reasons = _prepend(original["reasons"].combine_chunks(), picked["reason"])
    table = pa.table(
        {
            "account_id": original["account_id"],
            "risk": picked["supervised_risk"],
            "flagged": picked["supervised_flagged"],
            "campaign_id": original["campaign_id"],
            "reasons": reasons,
        },
        schema=DETECTED_ACCOUNTS,
    )
    pq.write_table(table, run_dir / "accounts.parquet")


def _prepend(lists: pa.ListArray, first: pa.ChunkedArray) -> pa.ListArray:
    """Each list with one more string in front, without a Python loop over rows."""
    offsets = lists.offsets.to_numpy() - lists.offsets[0].as_py()
    new_offsets = offsets + np.arange(len(offsets))  # every earlier list grew by one
    values = np.empty(new_offsets[-1], dtype=object)
    is_first = np.zeros(len(values), dtype=bool)
    is_first[new_offsets[:-1]] = True
    values[is_first] = first.to_numpy(zero_copy_only=False)
    values[~is_first] = lists.flatten().to_numpy(zero_copy_only=False)
    return pa.ListArray.from_arrays(
        pa.array(new_offsets.astype(np.int32)), pa.array(values, pa.string())
    )


def _note_in_summary(run_dir: Path, table: pa.Table, threshold: float, replace: bool) -> None:
    path = run_dir / "summary.json"
    if not path.exists():
        return
    summary = json.loads(path.read_text())
    summary["supervised"] = {
        "file": SUPERVISED_FILE,
        "threshold": threshold,
        "flagged": int(pc.sum(table["supervised_flagged"]).as_py() or 0),
        "replaced_accounts": replace,
    }
    path.write_text(json.dumps(summary, indent=2, default=str))

"""Derive the simulator's calibration parameters from public LLM traffic traces.

Reads ../shared/data (ServeGen per-client traces and token PMFs, Apache-2.0; Azure LLM inference
trace 2023, CC BY 4.0) and writes src/distillguard/simulate/data/calibration.json, which the
simulator reads at run time (it never reads the traces themselves).

    .venv/bin/python bench/calibrate.py [--data ../shared/data] [--plot docs/calibration.png]
"""

from __future__ import annotations

import argparse
import ast
import csv
import glob
import json
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "distillguard" / "simulate" / "data" / "calibration.json"
PROBS = np.linspace(0.0, 1.0, 21)  # quantile grid stored in the calibration file
MIN_WINDOW_REQUESTS = 10  # a window's CV is too noisy below this many requests


def _pmf(value: object) -> dict[float, float]:
    """ServeGen stores PMFs as dicts, sometimes as their Python repr."""
    if isinstance(value, str):
        value = ast.literal_eval(value) if value.strip() else {}
    return {float(k): float(v) for k, v in (value or {}).items()}


def _trace_rows(path: str) -> list[tuple[float, float, float, str]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for rec in csv.reader(fh):
            if not rec or rec[0].startswith("window"):
                continue
            rows.append((float(rec[0]), float(rec[1]), float(rec[2]), rec[3]))
    return rows


def client_statistics(data: Path) -> dict:
    """Per-client mean rate and typical inter-arrival CV over active 10-minute windows."""
    rates, cvs, families = [], [], {"Gamma": 0, "Weibull": 0}
    hourly = np.zeros(24)
    for path in sorted(glob.glob(str(data / "servegen" / "*" / "*" / "*-trace.csv"))):
        rows = _trace_rows(path)
        active = [(w, r, c, f) for w, r, c, f in rows if r > 0]
        for w, r, _, _ in active:
            hourly[int(w // 3600) % 24] += r * 600
        good = [(r, c) for _, r, c, _ in active if r * 600 >= MIN_WINDOW_REQUESTS and c > 0]
        for _, _, _, f in active:
            if f in families:
                families[f] += 1
        if not active:
            continue
        rates.append(float(np.mean([r for _, r, _, _ in active])))
        if good:
            r, c = np.array(good).T
            cvs.append(float(np.average(c, weights=r)))
    total = sum(families.values()) or 1
    return {
        "clients": len(rates),
        "client_rate_rps": {
            "probs": PROBS.tolist(),
            "quantiles": np.quantile(rates, PROBS).round(6).tolist(),
        },
        "client_cv": {
            "probs": PROBS.tolist(),
            "quantiles": np.quantile(cvs, PROBS).round(4).tolist(),
            "clients": len(cvs),
        },
        "arrival_family_share": {k: round(v / total, 4) for k, v in families.items()},
        "hourly_profile": (hourly / hourly.mean()).round(4).tolist(),
    }


def _log_moments(pmf: dict[float, float]) -> tuple[float, float, float]:
    x = np.array([k for k in pmf if k > 0])
    p = np.array([pmf[k] for k in pmf if k > 0])
    if p.sum() <= 0:
        return 0.0, 0.0, 0.0
    p = p / p.sum()
    lx = np.log(x)
    m = float((p * lx).sum())
    return m, float((p * lx * lx).sum()), 1.0


def _window_weights(trace: str) -> dict[int, float]:
    """Requests a client sent in each 6-hour dataset window (weights for its PMFs)."""
    out: dict[int, float] = {}
    if not Path(trace).exists():
        return out
    for w, r, _, _ in _trace_rows(trace):
        key = int(w // 21600) * 21600
        out[key] = out.get(key, 0.0) + r * 600
    return out


def pmf_profile(data: Path, category: str, in_key: str, out_key: str = "output_tokens") -> dict:
    """Lognormal (mu, sigma of ln tokens) of the request-weighted mixture of per-window PMFs."""
    acc = {in_key: np.zeros(3), out_key: np.zeros(3)}
    mixture: dict[str, dict[float, float]] = {in_key: {}, out_key: {}}
    extra: dict[str, float] = {"image_tokens": 0.0, "images": 0.0}
    for path in sorted(glob.glob(str(data / "servegen" / category / "*-dataset.json"))):
        weights = _window_weights(path.replace("-dataset.json", "-trace.csv"))
        with open(path, encoding="utf-8") as fh:
            windows = json.load(fh)
        for key, win in windows.items():
            w = weights.get(int(key), 0.0)
            if w <= 0:
                continue
            for k in (in_key, out_key):
                pmf = _pmf(win.get(k))
                m, m2, ok = _log_moments(pmf)
                if ok:
                    acc[k] += w * np.array([m, m2, 1.0])
                    for v, p in pmf.items():
                        mixture[k][v] = mixture[k].get(v, 0.0) + w * p
            if "image_tokens" in win:
                it, ic = _pmf(win["image_tokens"]), _pmf(win["image_count"])
                extra["image_tokens"] += w * sum(v * p for v, p in it.items())
                extra["images"] += w * sum(v * p for v, p in ic.items())
    prof = {}
    for name, k in (("input", in_key), ("output", out_key)):
        s, s2, n = acc[k]
        mu = s / n
        prof[name] = {
            "mu": round(mu, 4),
            "sigma": round(float(np.sqrt(max(s2 / n - mu * mu, 1e-6))), 4),
            "quantiles": _pmf_quantiles(mixture[k]),
        }
    if extra["images"] > 0:
        prof["tokens_per_image"] = round(extra["image_tokens"] / extra["images"], 1)
    return prof


def _pmf_quantiles(pmf: dict[float, float]) -> list[float]:
    x = np.array(sorted(pmf))
    p = np.array([pmf[v] for v in x])
    cdf = np.cumsum(p) / p.sum()
    return [float(x[min(np.searchsorted(cdf, q), len(x) - 1)]) for q in PROBS]


def azure_profile(path: Path) -> dict:
    ctx, gen, ts = [], [], []
    with open(path, encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            c, g = int(rec["ContextTokens"]), int(rec["GeneratedTokens"])
            if c > 0 and g > 0:
                ctx.append(c)
                gen.append(g)
                ts.append(datetime.fromisoformat(rec["TIMESTAMP"][:26]).timestamp())
    ts_arr = np.sort(np.array(ts))
    gaps = np.diff(ts_arr)
    prof = {}
    for name, vals in (("input", np.array(ctx)), ("output", np.array(gen))):
        lv = np.log(vals)
        prof[name] = {
            "mu": round(float(lv.mean()), 4),
            "sigma": round(float(lv.std()), 4),
            "quantiles": np.quantile(vals, PROBS).tolist(),
        }
    prof["requests"] = len(ctx)
    prof["requests_per_s"] = round(len(ctx) / float(ts_arr[-1] - ts_arr[0]), 3)
    prof["interarrival_cv"] = round(float(gaps.std() / gaps.mean()), 3)
    return prof


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="also simulate and write a real-vs-simulated PNG here (needs matplotlib)",
    )
    ap.add_argument("--plot-only", action="store_true", help="skip re-deriving calibration.json")
    args = ap.parse_args()
    if args.plot_only:
        plot(args.plot or ROOT / "docs" / "calibration.png")
        return
    data: Path = args.data
    azure = data / "azure-llm-2023"
    conv = azure_profile(azure / "AzureLLMInferenceTrace_conv.csv")
    code = azure_profile(azure / "AzureLLMInferenceTrace_code.csv")
    reason = pmf_profile(data, "reason/deepseek-r1", "input_tokens")
    vision = pmf_profile(data, "multimodal/mm-image", "text_tokens")
    language = pmf_profile(data, "language/m-small", "input_tokens")
    clients = client_statistics(data)
    calib = {
        "note": "Derived by bench/calibrate.py from public traces; see docs/simulator.md.",
        "sources": {
            "servegen": "ServeGen (alibaba/ServeGen; arXiv 2505.09999), Apache License 2.0: "
            "per-client rate/CV/inter-arrival per 10-min window, token PMFs per 6-h window",
            "azure": "Azure LLM inference trace 2023 (Azure/AzurePublicDataset; Patel et al., "
            "Splitwise, ISCA 2024), CC BY 4.0: ContextTokens, GeneratedTokens, timestamps",
        },
        "token_profiles": {
            "conv": {"source": "azure conv", **conv},
            "code": {"source": "azure code", **code},
            "reason": {"source": "servegen deepseek-r1", **reason},
            "vision": {"source": "servegen mm-image (text part)", **vision},
            "language_small": {"source": "servegen m-small", **language},
        },
        "tokens_per_image": vision.get("tokens_per_image", 1100.0),
        **clients,
    }
    OUT.write_text(json.dumps(calib, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    for k, v in calib["token_profiles"].items():
        print(
            f"  {k:15s} in mu={v['input']['mu']:.2f} s={v['input']['sigma']:.2f}  "
            f"out mu={v['output']['mu']:.2f} s={v['output']['sigma']:.2f}"
        )
    print("  client cv quantiles", calib["client_cv"]["quantiles"][::4])
    print("  client rate quantiles", calib["client_rate_rps"]["quantiles"][::4])
    if args.plot:
        plot(args.plot)


# ----------------------------------------------------------------------------- comparison plot


def _simulated_stats(tmp: Path) -> dict[str, np.ndarray]:
    """Benign statistics from a fresh simulation (seed-report at scale 0.005 + a CV probe)."""
    import duckdb

    from distillguard.simulate import simulate
    from distillguard.simulate.scenario import parse_scenario

    run = tmp / "sr"
    simulate("seed-report", scale=0.005, seed=11, out=run)
    base = (
        f"FROM read_parquet('{run}/events.parquet') e JOIN read_parquet('{run}/labels.parquet') l "
        "USING (account_id) WHERE tools = 0 AND images = 0 AND system IS NULL"
    )

    def col(sql: str) -> np.ndarray:
        return np.array([r[0] for r in duckdb.sql(sql).fetchall()], dtype=np.float64)

    stats = {
        "conv_in": col(f"SELECT input_tokens {base} AND persona = 'chat_user'"),
        "conv_out": col(
            f"SELECT output_tokens {base} AND persona = 'chat_user' AND status = 'ok' "
            "AND thinking_budget = 0"
        ),
        "reason_in": col(f"SELECT input_tokens {base} AND persona = 'benchmark_runner'"),
    }
    probe = {
        "name": "cv",
        "start": "2026-03-02T00:00:00Z",
        "days": 7,
        "models": ["m"],
        "persona": [
            {
                "name": "api_app",
                "kind": "benign",
                "accounts": 300,
                "events": 90000,
                "volume_sigma": 0,
                "timing": "flat",
                "session_events": 0,
                "network": "datacenter",
                "models": {"m": 1.0},
            }
        ],
    }
    simulate(parse_scenario(probe), scale=1.0, seed=12, out=tmp / "cv")
    rows = duckdb.sql(
        "SELECT account_id, epoch_ms(timestamp) AS t FROM "
        f"read_parquet('{tmp}/cv/events.parquet') ORDER BY account_id, t"
    ).fetchall()
    ids = np.array([r[0] for r in rows])
    ts = np.array([r[1] for r in rows], dtype=np.float64)
    same = ids[1:] == ids[:-1]
    gaps, gid = np.diff(ts)[same], ids[1:][same]
    stats["client_cv"] = np.array(
        [gaps[gid == a].std() / gaps[gid == a].mean() for a in np.unique(gid)]
    )
    return stats


def plot(png: Path) -> None:
    import tempfile

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    calib = json.loads(OUT.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        sim = _simulated_stats(Path(tmp))
    prof = calib["token_profiles"]
    panels = [
        (
            "Chat input tokens",
            prof["conv"]["input"]["quantiles"],
            sim["conv_in"],
            "Azure conv 2023",
        ),
        (
            "Chat output tokens",
            prof["conv"]["output"]["quantiles"],
            sim["conv_out"],
            "Azure conv 2023",
        ),
        (
            "Reasoning input tokens",
            prof["reason"]["input"]["quantiles"],
            sim["reason_in"],
            "ServeGen deepseek-r1",
        ),
        (
            "Per-client inter-arrival CV",
            calib["client_cv"]["quantiles"],
            sim["client_cv"],
            "ServeGen clients",
        ),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for ax, (title, real_q, simulated, source) in zip(axes.flat, panels, strict=True):
        probs = np.linspace(0, 1, len(real_q))
        ax.plot(real_q, probs, "o-", ms=3, label=f"real ({source})")
        s = np.sort(simulated)
        ax.plot(s, np.linspace(0, 1, len(s)), label=f"simulated (n={len(s):,})")
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_ylabel("CDF")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("distillguard simulator vs real LLM API traffic (benign personas)")
    fig.text(
        0.01,
        0.005,
        "Sources: ServeGen (Alibaba, Apache-2.0); Azure LLM inference trace 2023 "
        "(Microsoft, CC BY 4.0). Real curves: quantiles stored in calibration.json.",
        fontsize=7,
    )
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


if __name__ == "__main__":
    main()

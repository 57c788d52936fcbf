"""Prometheus text exposition (format 0.0.4), written by hand: counters, gauges, one histogram."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, ClassVar

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in labels)
    return "{" + inner + "}"


class Metrics:
    """Thread-safe counters and gauges keyed by (name, labels), plus batch-latency histogram."""

    HELP: ClassVar[dict[str, tuple[str, str]]] = {
        "distillguard_events_total": ("counter", "Events acknowledged, by decision."),
        "distillguard_duplicate_events_total": ("counter", "Events whose request_id was known."),
        "distillguard_rejected_events_total": ("counter", "Events that failed validation."),
        "distillguard_http_requests_total": ("counter", "HTTP requests, by route and status."),
        "distillguard_signal_events_total": ("counter", "Events whose signals were computed."),
        "distillguard_signal_queue_events": ("gauge", "Events waiting for signal computation."),
        "distillguard_analysis_runs_total": ("counter", "Background analysis runs."),
        "distillguard_analysis_seconds": ("gauge", "Duration of the last analysis run."),
        "distillguard_campaigns": ("gauge", "Campaigns active after the last analysis."),
        "distillguard_alerts_total": ("counter", "New-campaign alerts sent, by outcome."),
        "distillguard_signup_decisions_total": ("counter", "Sign-ups judged, by decision."),
        "distillguard_batch_seconds": ("histogram", "Time to decide one POSTed batch."),
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._hist = [0] * (len(LATENCY_BUCKETS) + 1)
        self._hist_sum = 0.0

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[name][key] = self._values[name].get(key, 0.0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[name][tuple(sorted(labels.items()))] = value

    def observe_batch(self, seconds: float) -> None:
        with self._lock:
            self._hist[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self._hist_sum += seconds

    def value(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values[name].get(tuple(sorted(labels.items())), 0.0)

    def snapshot(self) -> dict[str, Any]:
        """Every value as JSON-able data, for the other request processes to add up."""
        with self._lock:
            return {
                "values": [
                    [name, [list(kv) for kv in labels], v]
                    for name, series in self._values.items()
                    for labels, v in series.items()
                ],
                "hist": list(self._hist),
                "hist_sum": self._hist_sum,
            }

    def render(self, others: Sequence[dict[str, Any]] = ()) -> str:
        """Text format; `others` (snapshots of other processes) are added in: counters and
        the histogram are summed, and so are gauges (each is set by one process only, or is a
        per-process amount such as the signal queue)."""
        with self._lock:
            values = {name: dict(series) for name, series in self._values.items()}
            hist, hist_sum = list(self._hist), self._hist_sum
        for snap in others:
            for name, labels, v in snap.get("values", []):
                key = tuple((str(k), str(x)) for k, x in labels)
                series = values.setdefault(name, {})
                series[key] = series.get(key, 0.0) + float(v)
            for i, n in enumerate(snap.get("hist", [])[: len(hist)]):
                hist[i] += int(n)
            hist_sum += float(snap.get("hist_sum", 0.0))
        lines: list[str] = []
        for name, (kind, text) in self.HELP.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            if kind == "histogram":
                cumulative = 0
                for bound, count in zip(LATENCY_BUCKETS, hist, strict=False):
                    cumulative += count
                    lines.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
                total = sum(hist)
                lines += [
                    f'{name}_bucket{{le="+Inf"}} {total}',
                    f"{name}_sum {hist_sum:.6f}",
                    f"{name}_count {total}",
                ]
                continue
            for labels, v in sorted(values.get(name, {}).items()):
                lines.append(f"{name}{_labels(labels)} {v:g}")
        return "\n".join(lines) + "\n"

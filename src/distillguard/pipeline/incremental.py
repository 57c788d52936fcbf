"""Incremental detection: `detect --state DIR [--since DATE]`.

Request signals are the expensive stage and depend on one request alone, so the state
directory keeps them: the enriched table, one sub-directory per UTC day
(`DIR/enriched/day_N/`), plus `DIR/manifest.json` (format, the settings the enrichment depends
on and their hash, the days covered, and one entry per run with its input files). A run with
`--since` enriches only events at or after that date, replaces those days in the state, and
then recomputes every later stage (fingerprints, links, clusters, scoring, campaigns) from the
whole stored table, so its output equals a full run over the same events.

The later stages are recomputed rather than updated in place: links and clusters are global
(a new day can join two old groups), and they cost a small share of the run next to signals.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from distillguard import __version__
from distillguard.errors import UserError
from distillguard.signals import signal_schema

MS_PER_DAY = 86_400_000
FORMAT = 1
MANIFEST = "manifest.json"
ENRICHED = "enriched"
DAY_PREFIX = "day_"


def parse_since(value: str) -> int:
    """`YYYY-MM-DD` -> epoch milliseconds of that UTC midnight."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise UserError(f"--since must be a date like 2026-01-31, got {value!r}") from None
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def day_name(day: int) -> str:
    """Days since the epoch -> `YYYY-MM-DD`."""
    return datetime.fromtimestamp(day * 86_400, UTC).date().isoformat()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out.extend(sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p])
    return out


def enrichment_settings(input_format: str, ip_intel: list[Path] | None) -> dict:
    """Everything the stored enrichment depends on: code version, signal columns, IP data."""
    return {
        "distillguard": __version__,
        "input_format": input_format,
        "signals": [f"{f.name}:{f.type}" for f in signal_schema()],
        "ip_intel_sha256": [_sha256(p) for p in _files(ip_intel or [])],
    }


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def input_fingerprints(paths: list[Path]) -> list[dict]:
    """Name, size and modification time of each input file (an audit trail, cheap to take)."""
    return [
        {"path": str(p), "bytes": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
        for p in _files(paths)
    ]


@dataclass
class State:
    """The state directory of incremental runs."""

    root: Path
    settings: dict
    days: list[int] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)

    @property
    def enriched_dir(self) -> Path:
        return self.root / ENRICHED

    @property
    def source(self) -> str:
        """Every stored day's Parquet files, as a glob both engines read."""
        return (self.enriched_dir / f"{DAY_PREFIX}*" / "*.parquet").as_posix()

    @classmethod
    def open(cls, root: Path, settings: dict, since_ms: int | None) -> State:
        """The state to update: fresh for a full run, checked against `settings` for --since."""
        manifest = root / MANIFEST
        if since_ms is None:
            return cls(root=root, settings=settings)
        if not manifest.exists():
            raise UserError(f"{root} holds no detect state; run once with --state and no --since")
        stored = json.loads(manifest.read_text())
        if stored.get("format") != FORMAT:
            raise UserError(f"{root} was written by another state format; rebuild it")
        if stored.get("settings_hash") != settings_hash(settings):
            changed = sorted(
                k for k in settings if stored.get("settings", {}).get(k) != settings[k]
            )
            raise UserError(
                f"state in {root} was built with different settings ({', '.join(changed)}); "
                "rebuild it with a run without --since"
            )
        state = cls(root=root, settings=settings, days=stored["days"], runs=stored["runs"])
        state.check_complete()
        state.check_no_gap(since_ms)
        return state

    def check_complete(self) -> None:
        """Every day the manifest lists is on disk (an interrupted run can leave holes)."""
        missing = [d for d in self.days if not (self.enriched_dir / f"{DAY_PREFIX}{d}").is_dir()]
        if missing:
            raise UserError(
                f"state in {self.root} is missing {len(missing)} stored day(s) (interrupted "
                "run?); rebuild it with a run without --since"
            )

    def check_no_gap(self, since_ms: int) -> None:
        """New days must start at most one day after the last stored day."""
        since_day = since_ms // MS_PER_DAY
        if self.days and since_day > max(self.days) + 1:
            last = day_name(max(self.days))
            raise UserError(
                f"--since {day_name(since_day)} leaves a gap: the state ends on {last}; "
                f"use --since {last} or earlier"
            )

    def replace_days(self, parts: Path, since_ms: int | None) -> list[int]:
        """Move `parts/part_day=N/` into the state, dropping stored days >= since (all on a
        full run). Returns the days written."""
        self.enriched_dir.mkdir(parents=True, exist_ok=True)
        since_day = None if since_ms is None else since_ms // MS_PER_DAY
        for old in self.enriched_dir.glob(f"{DAY_PREFIX}*"):
            if since_day is None or int(old.name.removeprefix(DAY_PREFIX)) >= since_day:
                shutil.rmtree(old)
        written = []
        for part in sorted(parts.glob("part_day=*")):
            day = int(part.name.split("=", 1)[1])
            shutil.move(part, self.enriched_dir / f"{DAY_PREFIX}{day}")  # may cross devices
            written.append(day)
        kept = [d for d in self.days if since_day is not None and d < since_day]
        self.days = sorted(set(kept) | set(written))
        return written

    def save(self, since_ms: int | None, inputs: list[Path], rows: int, engine: str) -> None:
        self.runs.append(
            {
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "since_ms": since_ms,
                "engine": engine,
                "rows_enriched": rows,
                "inputs": input_fingerprints(inputs),
            }
        )
        manifest = {
            "format": FORMAT,
            "settings": self.settings,
            "settings_hash": settings_hash(self.settings),
            "days": self.days,
            "runs": self.runs,
            "updated": time.time(),
        }
        tmp = self.root / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2))
        tmp.replace(self.root / MANIFEST)  # atomic: a crash leaves the old manifest

"""ingest stage: validate request logs against the data contract and write normalised Parquet.

Public API:
    run_ingest(events, accounts, releases, ip_intel, out, progress) -> IngestResult
    read_section(kind, paths, rejects_path=None) -> (pa.Table, SectionCounts)
    validate_table(kind, table) -> (pa.Table, rejects)
    otel_spans_to_events(payload) -> (pa.Table, rejects)
    litellm_record_to_event(record) -> dict
    classify_ips(ips, intel) -> pa.Table;  is_disposable_domain(domains) -> pa.Array
"""

from distillguard.ingest.ipintel import classify_ips, is_disposable_domain
from distillguard.ingest.litellm import litellm_record_to_event
from distillguard.ingest.otel import otel_spans_to_events
from distillguard.ingest.pipeline import (
    IngestResult,
    SectionCounts,
    read_section,
    run_ingest,
    validate_table,
)

__all__ = [
    "IngestResult",
    "SectionCounts",
    "classify_ips",
    "is_disposable_domain",
    "litellm_record_to_event",
    "otel_spans_to_events",
    "read_section",
    "run_ingest",
    "validate_table",
]

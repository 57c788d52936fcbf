"""Validation as SQL: every contract field becomes `present`, `value` and (for IPs) `text` columns,
and one CASE expression names the first broken rule of a record as `reason:field`.

Nothing here loops over rows; DuckDB evaluates the expressions batch by batch.
"""

from __future__ import annotations

import duckdb

from distillguard.errors import UserError
from distillguard.ingest.sections import FieldRule, Section
from distillguard.ingest.sources import (
    PROVENANCE_COLUMNS,
    SourceFile,
    csv_header,
    csv_reader,
    describe,
    json_reader,
    parquet_reader,
    sql_ident,
    sql_str,
)

REASONS = (
    "missing_field",
    "wrong_type",
    "bad_timestamp",
    "bad_ip",
    "negative_tokens",
    "unknown_value",
)

_INT_RE = r"'[+-]?[0-9]+'"
_RFC3339_RE = (
    r"'[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})'"
)
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_RE = f"'{_OCTET}(\\.{_OCTET}){{3}}'"
_SQL_TYPE = {"int64": "BIGINT", "int32": "INTEGER", "float": "DOUBLE", "timestamp": "TIMESTAMPTZ"}
_INT_TYPES = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
    "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
}  # fmt: skip
_TEXT_KINDS = ("string", "ip", "cidr", "enum")
# Required identifiers where "" means the field is missing (a redacted prompt may be "").
_EMPTY_IS_MISSING = {"request_id", "account_id", "model", "cidr", "kind"}


def _epoch_ms(expr: str) -> str:
    # Bounds keep epoch_ms inside years 1-9999 so an absurd number is a bad timestamp, not an error.
    return (
        f"CASE WHEN {expr} BETWEEN -62135596800000 AND 253402300799999 "
        f"THEN epoch_ms({expr})::TIMESTAMPTZ END"
    )


def _rfc3339(expr: str) -> str:
    # DuckDB parses at most microseconds and wants upper-case T/Z, so normalise before casting.
    return (
        f"CASE WHEN regexp_full_match({expr}, {_RFC3339_RE}) THEN "
        rf"try_cast(regexp_replace(upper({expr}), '(\.[0-9]{{6}})[0-9]+', '\1') AS TIMESTAMPTZ) END"
    )


def _integral(expr: str, sql_type: str) -> str:
    return f"CASE WHEN {expr} = trunc({expr}) THEN try_cast({expr} AS {sql_type}) END"


def _from_text(rule: FieldRule, col: str) -> tuple[str, str, str]:
    """(present, value, text) for a VARCHAR column (CSV cells, JSON strings, Parquet strings)."""
    t = f"trim({col})"
    if rule.kind == "string":
        empty_missing = rule.required and rule.name in _EMPTY_IS_MISSING
        present = f"({col} IS NOT NULL AND {t} <> '')" if empty_missing else f"({col} IS NOT NULL)"
        return present, col, col
    present = f"({col} IS NOT NULL AND {t} <> '')"
    if rule.kind in ("int64", "int32"):
        sql_type = _SQL_TYPE[rule.kind]
        value = f"CASE WHEN regexp_full_match({t}, {_INT_RE}) THEN try_cast({t} AS {sql_type}) END"
    elif rule.kind == "float":
        value = f"try_cast({t} AS DOUBLE)"
    elif rule.kind == "timestamp":
        value = (
            f"CASE WHEN regexp_full_match({t}, {_INT_RE}) "
            f"THEN {_epoch_ms(f'try_cast({t} AS BIGINT)')} "
            f"ELSE {_rfc3339(t)} END"
        )
    elif rule.kind == "enum":
        value = f"lower({t})"
    elif rule.kind == "ip":
        # Canonical dotted quads are checked here (exactly Python's rule: no leading zeros);
        # anything else (IPv6, odd forms) is parsed once per distinct string in Python.
        value = f"CASE WHEN regexp_full_match({t}, {_IPV4_RE}) THEN {t} END"
    else:  # cidr: always parsed in Python (IP-intel tables are small)
        value = "NULL"
    return present, value, t


def _from_json(rule: FieldRule, col: str) -> tuple[str, str, str]:
    """(present, value, text) for a JSON-typed column: the JSON type must match the field.

    The type is read off the value's JSON text, which the reader writes minified: a number
    is sign, digits, fraction, exponent (it casts to DOUBLE); a string is quoted, and `true`,
    objects and arrays do not cast. Casting the text is about half the cost of `json_type`,
    which parses every value again.
    """
    x = f"{col}::VARCHAR"
    as_double = f"try_cast({x} AS DOUBLE)"
    if rule.kind in ("int64", "int32"):
        # Integral numbers only (12.0 yes, 1.5 no); the integer cast of the text keeps
        # precision beyond 2^53 and is NULL when out of range.
        integral = f"{as_double} = trunc({as_double})"
        value = f"CASE WHEN {integral} THEN try_cast({x} AS {_SQL_TYPE[rule.kind]}) END"
    elif rule.kind == "float":
        value = as_double
    elif rule.kind == "timestamp":
        value = (
            f"CASE WHEN starts_with({x}, '\"') THEN {_rfc3339(f'({col}->>{sql_str(chr(36))})')} "
            f"WHEN regexp_full_match({x}, '-?[0-9]+') "
            f"THEN {_epoch_ms(f'try_cast({x} AS BIGINT)')} END"
        )
    else:
        raise AssertionError(f"text field {rule.name} read as JSON")
    return f"({col} IS NOT NULL)", value, x


def _native_family(duck_type: str) -> str:
    base = duck_type.upper()
    if base in _INT_TYPES:
        return "int"
    if base in ("DOUBLE", "FLOAT", "REAL") or base.startswith("DECIMAL"):
        return "float"
    if base == "TIMESTAMP WITH TIME ZONE":
        return "timestamptz"
    if base.startswith("TIMESTAMP"):
        return "timestamp"
    if base == "VARCHAR":
        return "text"
    if base == "JSON":
        return "json"
    return "other"


_COMPATIBLE = {
    "int": {"int64", "int32", "float", "timestamp", "string"},
    "float": {"int64", "int32", "float"},
    "timestamptz": {"timestamp"},
    "timestamp": {"timestamp"},
}


def _from_native(rule: FieldRule, col: str, duck_type: str, where: str) -> tuple[str, str, str]:
    """(present, value, text) for a typed column (Parquet, Arrow); impossible types: UserError."""
    family = _native_family(duck_type)
    if family == "text":
        return _from_text(rule, col)
    if family == "json" and rule.kind not in _TEXT_KINDS:
        return _from_json(rule, col)
    if rule.kind not in _COMPATIBLE.get(family, set()):
        raise UserError(f"{where}: column {rule.name!r} has type {duck_type}, expected {rule.kind}")
    present = f"({col} IS NOT NULL)"
    if rule.kind in ("int64", "int32"):
        sql_type = _SQL_TYPE[rule.kind]
        if family == "float":
            return present, _integral(f"{col}::DOUBLE", sql_type), col
        return present, f"try_cast({col} AS {sql_type})", col
    if rule.kind == "float":
        return present, f"{col}::DOUBLE", col
    if rule.kind == "timestamp":
        if family == "int":
            return present, _epoch_ms(f"try_cast({col} AS BIGINT)"), col
        # A naive timestamp column is taken as UTC (the session time zone is UTC).
        return present, f"{col}::TIMESTAMPTZ", col
    return _from_text(rule, f"CAST({col} AS VARCHAR)")


def _json_columns(section: Section) -> dict[str, str]:
    return {r.name: ("VARCHAR" if r.kind in _TEXT_KINDS else "JSON") for r in section.rules}


def _csv_reader_and_types(
    con: duckdb.DuckDBPyConnection, source: SourceFile, fid: int
) -> tuple[str, dict[str, str]]:
    """A CSV file whose malformed rows become rejects. DuckDB's dialect sniffer gives up when
    such a row is among the rows it samples; then the header is read in Python instead."""
    if not source.columns:
        try:
            source.columns = describe(con, csv_reader(source), source.display)
        except UserError as exc:
            if "sniffing" not in str(exc):
                raise
            source.csv_header = csv_header(source)
            source.columns = {c: "VARCHAR" for c in source.csv_header}
    return csv_reader(source, fid), source.columns


def _reader_and_types(
    con: duckdb.DuckDBPyConnection,
    source: SourceFile,
    section: Section,
    row_numbers: bool,
    fid: int,
) -> tuple[str, dict[str, str]]:
    if source.format == "jsonl":
        return json_reader(source, _json_columns(section)), _json_columns(section)
    if source.format == "csv":
        return _csv_reader_and_types(con, source, fid)
    if source.format == "parquet":
        reader = parquet_reader(source, row_numbers)
    else:
        reader = str(source.arrow_view)
    if not source.columns:
        source.columns = describe(con, reader, source.display)
        source.has_provenance = all(c in source.columns for c in PROVENANCE_COLUMNS)
    return reader, source.columns


def _row_expressions(source: SourceFile, row_numbers: bool) -> tuple[str, str]:
    """(row, line) SQL: 0-based record index and 1-based text line (NULL for Parquet)."""
    if source.has_provenance:
        return "_src_row", "_src_line"
    if not row_numbers:
        return "NULL::BIGINT", "NULL::BIGINT"
    if source.format == "parquet":
        return "file_row_number", "NULL::BIGINT"
    # The window without ORDER BY numbers records in file order (insertion order is kept).
    rn = "(row_number() OVER () - 1)"
    if source.format == "csv":
        return rn, f"({rn} + 2)"  # line 1 is the header
    if source.format == "jsonl":
        return rn, f"({rn} + 1)"
    return rn, "NULL::BIGINT"


def typed_select(
    con: duckdb.DuckDBPyConnection,
    source: SourceFile,
    fid: int,
    section: Section,
    row_numbers: bool,
    only: tuple[str, ...] | None = None,
) -> str:
    """One file as `_fid, _row, _line, _blank, <field>__p, __v, __r` (+ `__t` for addresses)."""
    reader, types = _reader_and_types(con, source, section, row_numbers, fid)
    row, line = _row_expressions(source, row_numbers)
    cols = [f"{fid}::INTEGER AS _fid", f"{row}::BIGINT AS _row", f"{line}::BIGINT AS _line"]
    read = [sql_ident(r.name) for r in section.rules if r.name in types]
    # A malformed JSON line is read (ignore_errors) as a row of NULLs: flag such rows.
    blank = " AND ".join(f"{c} IS NULL" for c in read) if source.format == "jsonl" else ""
    if source.has_provenance and "_src_malformed" in types:  # adapters flag such lines
        blank = "coalesce(_src_malformed, false)"
    cols.append(f"({blank or 'false'})::BOOLEAN AS _blank")
    for rule in section.rules:
        if only is not None and rule.name not in only:
            continue
        duck_type = types.get(rule.name)
        col = sql_ident(rule.name)
        absent = duck_type is None or duck_type == '"NULL"' or duck_type == "NULL"
        if absent:
            present, value, text = "false", "NULL", "NULL::VARCHAR"
        elif source.format == "jsonl":
            fn = _from_text if duck_type == "VARCHAR" else _from_json
            present, value, text = fn(rule, col)
        else:
            present, value, text = _from_native(rule, col, duck_type, source.display)
        vtype = _SQL_TYPE.get(rule.kind, "VARCHAR")
        n = rule.name
        cols += [
            f"{present} AS {sql_ident(n + '__p')}",
            f"({value})::{vtype} AS {sql_ident(n + '__v')}",
            # The column as read, for rejects: turned into text only on rejected rows.
            f"{'NULL::VARCHAR' if absent else col} AS {sql_ident(n + '__r')}",
        ]
        if rule.kind in ("ip", "cidr"):  # the trimmed text Python parses when not IPv4
            cols.append(f"({text})::VARCHAR AS {sql_ident(n + '__t')}")
    return f"SELECT {', '.join(cols)} FROM {reader}"


def _reason_case(section: Section, value_of: dict[str, str]) -> str:
    branches = []
    for rule in section.rules:
        p, v = sql_ident(rule.name + "__p"), value_of[rule.name]
        tag = f"':{rule.name}'"
        if rule.required:
            branches.append(f"WHEN NOT {p} THEN 'missing_field'||{tag}")
        bad = {"timestamp": "bad_timestamp", "ip": "bad_ip", "cidr": "bad_ip"}.get(
            rule.kind, "wrong_type"
        )
        if rule.kind == "enum":
            allowed = ", ".join(sql_str(a) for a in rule.allowed)
            branches.append(f"WHEN {p} AND {v} NOT IN ({allowed}) THEN 'unknown_value'||{tag}")
        else:
            branches.append(f"WHEN {p} AND {v} IS NULL THEN '{bad}'||{tag}")
        if rule.non_negative:
            branches.append(f"WHEN {p} AND {v} < 0 THEN 'negative_tokens'||{tag}")
    return "CASE " + " ".join(branches) + " END"


def address_rule(section: Section) -> FieldRule | None:
    """The section's IP or CIDR field (each contract section has at most one)."""
    rules = [r for r in section.rules if r.kind in ("ip", "cidr")]
    assert len(rules) <= 1, "one address field per section"
    return rules[0] if rules else None


def validated_select(section: Section, typed_sql: str) -> str:
    """One file's columns in the pass (from `typed_select`): the contract fields plus `_why`,
    `_ord` and (for rejects) `_rec`.

    `_why` is 'reason:field' or NULL. A section's address field holds only canonical IPv4
    here; any other address string is returned as `_addr`, and since whether it parses is only
    known after Python has parsed it, the query gives `_why` as if it were invalid and `_why_ok`
    as if it were valid (the caller picks one per row). `_rec` holds the record's fields as
    text as read, computed only for rows that may be rejected (CASE evaluates its branch on
    those rows alone). `_blank` is true when no contract field was read at all (for JSON
    Lines, that is also what a malformed line looks like).
    """
    value_of, outputs = {}, []
    address = address_rule(section)
    for rule in section.rules:
        v = f"u.{sql_ident(rule.name + '__v')}"
        value_of[rule.name] = v
        out = f"coalesce({v}, {sql_str(rule.default)})" if rule.default else v
        outputs.append(f"{out} AS {sql_ident(rule.name)}")
    extra = [  # u.* already carries _fid, _row, _line and _blank
        "u._fid::BIGINT * 1000000000000 + u._row AS _ord",
        f"{_reason_case(section, value_of)} AS _why",
    ]
    if address is not None:
        v, t = (f"u.{sql_ident(address.name + s)}" for s in ("__v", "__t"))
        ok = _reason_case(section, {**value_of, address.name: t})
        extra.append(f"CASE WHEN {v} IS NULL AND {t} IS NOT NULL THEN {ok} END AS _why_ok")
        extra.append(f"CASE WHEN {v} IS NULL THEN {t} END AS _addr")
    raw = [
        f"{sql_str(r.name)}: left({sql_ident(r.name + '__r')}::VARCHAR, 1000)"
        for r in section.rules
        if r.name not in section.private_fields
    ]
    inner = f"SELECT u.*, {', '.join(outputs + extra)} FROM ({typed_sql}) u"
    keep = [sql_ident(r.name) for r in section.rules] + [
        "_fid", "_row", "_line", "_blank", "_ord", "_why",
    ]  # fmt: skip
    if address is not None:
        keep += ["_why_ok", "_addr"]
    rec = f"CASE WHEN _why IS NOT NULL THEN {{{', '.join(raw)}}} END AS _rec"
    return f"SELECT {', '.join(keep)}, {rec} FROM ({inner})"

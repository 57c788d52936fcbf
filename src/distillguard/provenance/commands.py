"""`distillguard provenance ...`: watermark keys, text detection, radioactivity, canaries."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import typer

from distillguard.errors import UserError
from distillguard.provenance.keys import load_key, new_key, save_key
from distillguard.provenance.watermark import Detection, WatermarkConfig

DEFAULT_PROBE_DOCS = 2000


def _config_from(params: dict[str, float | int]) -> WatermarkConfig:
    defaults = WatermarkConfig()
    return WatermarkConfig(
        gamma=float(params.get("gamma", defaults.gamma)),
        delta=float(params.get("delta", defaults.delta)),
        context_width=int(params.get("context_width", defaults.context_width)),
    )


def _read_texts(path: str) -> list[str]:
    """'-' = stdin. .jsonl: the `response` (or `text`) field of each line; otherwise
    documents separated by blank lines."""
    try:
        raw = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc
    if path.endswith(".jsonl"):
        return [
            str(_json_field(line, path, "response", "text"))
            for line in raw.splitlines()
            if line.strip()
        ]
    return [doc for doc in raw.split("\n\n") if doc.strip()]


def _json_field(line: str, path: str, *names: str) -> object:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: bad JSON line: {exc}") from exc
    for name in names:
        if isinstance(record, dict) and name in record:
            return record[name]
    raise UserError(f"{path}: a line has none of the fields {', '.join(names)}")


def _read_jsonl(path: Path) -> list[dict[str, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{n}: bad JSON: {exc}") from exc
        if not isinstance(record, dict) or "prompt" not in record:
            raise UserError(f"{path}:{n}: each line needs a `prompt` field")
        out.append(record)
    return out


def _emit(result: dict[str, object], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result))
        return
    for name, value in result.items():
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        typer.echo(f"{name:>12}: {shown}")


def _detection_dict(det: Detection) -> dict[str, object]:
    return {
        "tokens": det.n_tokens,
        "scored": det.n_scored,
        "green": det.n_green,
        "green_rate": det.green_rate,
        "gamma": det.gamma,
        "z": det.z,
        "p_value": det.p_value,
    }


def register(app: typer.Typer) -> None:
    prov = typer.Typer(
        help="Watermark served answers and test suspects for distillation.", no_args_is_help=True
    )
    key_app = typer.Typer(help="Watermark keys.", no_args_is_help=True)
    canary_app = typer.Typer(help="Keyed canary answers.", no_args_is_help=True)
    prov.add_typer(key_app, name="key")
    prov.add_typer(canary_app, name="canary")
    app.add_typer(prov, name="provenance")

    @key_app.command("new")
    def key_new(
        out: Path = typer.Option(..., "--out", help="Key file to write (JSON, mode 0600)."),
        key_id: str = typer.Option("", help="Public label for the key."),
        gamma: float = typer.Option(0.25, help="Green fraction of the vocabulary."),
        delta: float = typer.Option(3.0, help="Logit bias added to green tokens."),
        context_width: int = typer.Option(2, help="Tokens of context seeding the green list."),
        force: bool = typer.Option(False, help="Overwrite an existing key file."),
    ) -> None:
        """Create a new secret watermark key."""
        if out.exists() and not force:
            raise UserError(f"{out} exists (use --force to overwrite)")
        config = WatermarkConfig(gamma, delta, context_width)
        key = new_key(key_id)
        save_key(key, out, config.as_dict())
        typer.echo(f"wrote key {key.key_id} to {out}")

    @prov.command("detect-text")
    def detect_text_cmd(
        path: str = typer.Argument("-", help="Text file ('-' = stdin; .jsonl uses `response`)."),
        key_file: Path = typer.Option(..., "--key", help="Key file from `key new`."),
        no_dedup: bool = typer.Option(False, help="Score repeated (window, token) tuples again."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Is this text watermarked with the key? z-score and exact binomial p-value."""
        from distillguard.provenance.watermark import detect_text

        key, params = load_key(key_file)
        det = detect_text(_read_texts(path), key, _config_from(params), dedup=not no_dedup)
        _emit(_detection_dict(det), as_json)

    @prov.command("radioactivity")
    def radioactivity_cmd(
        suspect: Path = typer.Option(
            ..., help="Saved TinyLM (.pt, open weights) or its generated text (closed API)."
        ),
        key_file: Path = typer.Option(..., "--key", help="Key file from `key new`."),
        probe: Path | None = typer.Option(
            None, help="Open mode: unwatermarked probe text (default: the built-in corpus)."
        ),
        served: Path | None = typer.Option(
            None, help="Watermarked answers served: score only their context windows."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Was the suspect trained on text watermarked with the key? (Sander et al. 2024)"""
        from distillguard.provenance.radioactivity import closed_mode_test, served_windows
        from distillguard.provenance.tokenizer import split_words, token_key_array

        key, params = load_key(key_file)
        config = _config_from(params)
        allowed = None
        if served is not None:
            served_keys = [token_key_array(split_words(t)) for t in _read_texts(str(served))]
            allowed = served_windows(served_keys, config.context_width)
        if suspect.suffix == ".pt":
            result = _open_mode(suspect, probe, key, config, allowed)
        else:
            texts = _read_texts(str(suspect))
            result = closed_mode_test(
                [token_key_array(split_words(t)) for t in texts],
                key,
                config,
                allowed_windows=allowed,
            )
        _emit({"mode": result.mode, **_detection_dict(result.detection)}, as_json)

    @prov.command("generate")
    def generate_cmd(
        model: Path = typer.Option(..., help="Saved TinyLM (.pt)."),
        out: Path = typer.Option(..., "--out", help="Text file, one answer per paragraph."),
        n: int = typer.Option(100, help="Number of answers."),
        key_file: Path | None = typer.Option(None, "--key", help="Watermark with this key."),
        seed: int = typer.Option(0, help="Sampling seed."),
    ) -> None:
        """Sample answers from a TinyLM, watermarked if --key is given (as a server would)."""
        _require_torch()
        from distillguard.provenance.tinylm import load_model, sample
        from distillguard.provenance.watermark import WatermarkProcessor

        lm, vocab = load_model(model)
        proc = None
        if key_file is not None:
            key, params = load_key(key_file)
            proc = WatermarkProcessor(key, _config_from(params), len(vocab), vocab.token_keys)
        texts = [vocab.decode(ids[1:]) for ids in sample(lm, vocab, n, watermark=proc, seed=seed)]
        out.write_text("\n\n".join(texts) + "\n", encoding="utf-8")
        typer.echo(f"wrote {n} answers to {out}" + (" (watermarked)" if proc else ""))

    @canary_app.command("make")
    def canary_make(
        answers: Path = typer.Option(..., "--answers", help="JSONL with `prompt` and `response`."),
        key_file: Path = typer.Option(..., "--key", help="Key file from `key new`."),
        out: Path = typer.Option(..., "--out", help="JSONL of canary answers to serve."),
    ) -> None:
        """Write the keyed canary variant of each answer."""
        from distillguard.provenance.canary import make_canary

        key, _ = load_key(key_file)
        records = _read_jsonl(answers)
        with out.open("w", encoding="utf-8") as fh:
            for rec in records:
                canary = make_canary(str(rec["prompt"]), str(rec.get("response", "")), key)
                fh.write(
                    json.dumps(
                        {
                            "prompt": canary.prompt,
                            "response": canary.text,
                            "canary_id": canary.canary_id,
                            "slots": len(canary.slots),
                        }
                    )
                    + "\n"
                )
        typer.echo(f"wrote {len(records)} canaries to {out}")

    @canary_app.command("check")
    def canary_check_cmd(
        responses: Path = typer.Option(
            ..., "--responses", help="JSONL of the suspect's answers: `prompt`, `response`."
        ),
        key_file: Path = typer.Option(..., "--key", help="Key file from `key new`."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Does the suspect reproduce the keyed canary variants more than chance?"""
        from distillguard.provenance.canary import score_responses

        key, _ = load_key(key_file)
        answers = {str(r["prompt"]): str(r.get("response", "")) for r in _read_jsonl(responses)}
        check = score_responses(answers, key)
        _emit(
            {
                "prompts": check.n_prompts,
                "slots": check.n_slots,
                "matches": check.n_match,
                "match_rate": check.match_rate,
                "chance_rate": check.chance_rate,
                "p_value": check.p_value,
            },
            as_json,
        )


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise UserError("this needs torch: pip install 'distillguard[provenance]'") from exc


def _open_mode(
    suspect: Path,
    probe: Path | None,
    key: object,
    config: WatermarkConfig,
    allowed: np.ndarray | None,
) -> object:
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise UserError(
            "open-weights mode needs torch: pip install 'distillguard[provenance]'"
        ) from exc
    from distillguard.provenance.corpus import synthetic_corpus
    from distillguard.provenance.radioactivity import reading_mode_test
    from distillguard.provenance.tinylm import load_model, logits_fn

    model, vocab = load_model(suspect)
    # The built-in corpus does not depend on any key, so it is a valid probe.
    texts = _read_texts(str(probe)) if probe else synthetic_corpus(DEFAULT_PROBE_DOCS, seed=99)
    probe_ids = [vocab.encode(t, add_eos=False) for t in texts]
    return reading_mode_test(
        logits_fn(model),
        probe_ids,
        vocab.token_keys,
        key,  # type: ignore[arg-type]
        config,
        vocab.pad_id,
        allowed_windows=allowed,
    )

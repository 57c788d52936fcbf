"""`distillguard provenance ...`: keys, detect-text, radioactivity (closed/open), canaries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from distillguard.provenance.canary import make_canary
from distillguard.provenance.keys import load_key
from distillguard.provenance.tokenizer import join_words, token_key_array
from distillguard.provenance.watermark import WatermarkProcessor
from tests.cli_runner import run_cli
from tests.provenance.test_canary import _qa

WORDS = [f"w{i}" for i in range(300)]


def _texts(key_path: Path | None, n: int, seed: int) -> str:
    """Paragraphs of words sampled from random logits, watermarked with the key file's key."""
    rng = np.random.default_rng(seed)
    proc = None
    if key_path is not None:
        key, params = load_key(key_path)
        from distillguard.provenance.commands import _config_from

        proc = WatermarkProcessor(key, _config_from(params), len(WORDS), token_key_array(WORDS))
    ids = rng.integers(0, len(WORDS), size=(n, 2))
    for _ in range(30):
        logits = rng.normal(size=(n, len(WORDS)))
        if proc is not None:
            logits = proc(ids, logits)
        gumbel = -np.log(-np.log(rng.random(logits.shape)))
        ids = np.concatenate([ids, (logits + gumbel).argmax(axis=1)[:, None]], axis=1)
    return "\n\n".join(join_words(WORDS[i] for i in row) for row in ids)


@pytest.fixture
def key_file(tmp_path, monkeypatch, capsys) -> Path:
    path = tmp_path / "key.json"
    code, _out, _ = run_cli(["provenance", "key", "new", "--out", str(path)], monkeypatch, capsys)
    assert code == 0 and path.exists()
    return path


def test_key_new_refuses_to_overwrite(key_file, monkeypatch, capsys) -> None:
    code, _, err = run_cli(
        ["provenance", "key", "new", "--out", str(key_file)], monkeypatch, capsys
    )
    assert code == 2 and "exists" in err


def test_detect_text(key_file, tmp_path, monkeypatch, capsys) -> None:
    marked = tmp_path / "marked.txt"
    marked.write_text(_texts(key_file, 20, seed=1))
    code, out, _ = run_cli(
        ["provenance", "detect-text", str(marked), "--key", str(key_file), "--json"],
        monkeypatch,
        capsys,
    )
    assert code == 0 and json.loads(out)["p_value"] < 1e-10
    plain = tmp_path / "plain.txt"
    plain.write_text(_texts(None, 20, seed=1))
    code, out, _ = run_cli(
        ["provenance", "detect-text", str(plain), "--key", str(key_file), "--json"],
        monkeypatch,
        capsys,
    )
    assert code == 0 and json.loads(out)["p_value"] > 1e-3
    code, _, err = run_cli(
        ["provenance", "detect-text", str(plain), "--key", str(tmp_path / "nope.json")],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "key file" in err


def test_radioactivity_closed_mode_on_text(key_file, tmp_path, monkeypatch, capsys) -> None:
    suspect = tmp_path / "suspect.jsonl"
    suspect.write_text(
        "\n".join(json.dumps({"response": t}) for t in _texts(key_file, 20, seed=2).split("\n\n"))
    )
    code, out, _ = run_cli(
        [
            "provenance",
            "radioactivity",
            "--suspect",
            str(suspect),
            "--key",
            str(key_file),
            "--json",
        ],
        monkeypatch,
        capsys,
    )
    result = json.loads(out)
    assert code == 0 and result["mode"] == "closed" and result["p_value"] < 1e-10


def test_radioactivity_open_mode_runs_on_saved_model(key_file, tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    import torch

    from distillguard.provenance.corpus import synthetic_corpus
    from distillguard.provenance.tinylm import TinyLM, TinyLMConfig, save_model
    from distillguard.provenance.tokenizer import WordVocab

    vocab = WordVocab.from_texts(synthetic_corpus(200))
    model_path = tmp_path / "m.pt"
    torch.manual_seed(0)  # a fixed untrained model: its sampling entropy sets the p-value
    save_model(model_path, TinyLM(TinyLMConfig(len(vocab), d_model=16)), vocab)
    probe = tmp_path / "probe.txt"
    probe.write_text("\n\n".join(synthetic_corpus(100, seed=5)))
    code, out, _ = run_cli(
        [
            "provenance",
            "radioactivity",
            "--suspect",
            str(model_path),
            "--probe",
            str(probe),
            "--key",
            str(key_file),
            "--json",
        ],
        monkeypatch,
        capsys,
    )
    result = json.loads(out)
    assert code == 0 and result["mode"] == "open" and result["scored"] > 100
    generated = tmp_path / "generated.txt"
    code, _, _ = run_cli(
        [
            "provenance",
            "generate",
            "--model",
            str(model_path),
            "--out",
            str(generated),
            "--n",
            "20",
            "--key",
            str(key_file),
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0
    code, out, _ = run_cli(
        ["provenance", "detect-text", str(generated), "--key", str(key_file), "--json"],
        monkeypatch,
        capsys,
    )
    assert code == 0 and json.loads(out)["p_value"] < 1e-6
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    code, _, err = run_cli(
        ["provenance", "radioactivity", "--suspect", str(bad), "--key", str(key_file)],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "cannot load model" in err


def test_canary_make_and_check(key_file, tmp_path, monkeypatch, capsys) -> None:
    qa = _qa(30)
    answers = tmp_path / "answers.jsonl"
    answers.write_text("\n".join(json.dumps({"prompt": p, "response": a}) for p, a in qa))
    canaries = tmp_path / "canaries.jsonl"
    code, _, _ = run_cli(
        [
            "provenance",
            "canary",
            "make",
            "--answers",
            str(answers),
            "--key",
            str(key_file),
            "--out",
            str(canaries),
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0
    served = [json.loads(line) for line in canaries.read_text().splitlines()]
    key, _ = load_key(key_file)
    assert served[0]["response"] == make_canary(qa[0][0], qa[0][1], key).text
    code, out, _ = run_cli(
        [
            "provenance",
            "canary",
            "check",
            "--responses",
            str(canaries),
            "--key",
            str(key_file),
            "--json",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0 and json.loads(out)["p_value"] < 1e-20
    code, out, _ = run_cli(
        [
            "provenance",
            "canary",
            "check",
            "--responses",
            str(answers),
            "--key",
            str(key_file),
            "--json",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0 and json.loads(out)["p_value"] > 1e-3

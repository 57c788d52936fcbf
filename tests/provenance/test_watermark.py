"""Green-list watermark: processor, detector, dedup, null calibration (NumPy only)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kstest

from distillguard.errors import UserError
from distillguard.provenance.keys import WatermarkKey, load_key, new_key, save_key
from distillguard.provenance.tokenizer import join_words, split_words, token_key_array
from distillguard.provenance.watermark import (
    GreenList,
    WatermarkConfig,
    WatermarkProcessor,
    detect_ids,
    detect_keys,
    detect_text,
)

VOCAB = 500
CFG = WatermarkConfig(gamma=0.25, delta=3.0, context_width=2)


def _random_logits(rng: np.random.Generator, batch: int) -> np.ndarray:
    return rng.normal(0.0, 1.0, size=(batch, VOCAB))


def _sample_sequences(
    processor: WatermarkProcessor | None, n: int, length: int, seed: int
) -> np.ndarray:
    """Token ids sampled from random per-step logits, optionally watermarked (batched)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, size=(n, CFG.context_width))
    for _ in range(length):
        logits = _random_logits(rng, n)
        if processor is not None:
            logits = processor(ids, logits)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        u = rng.random((n, 1))
        nxt = (probs.cumsum(axis=1) < u).sum(axis=1).clip(max=VOCAB - 1)
        ids = np.concatenate([ids, nxt[:, None]], axis=1)
    return ids


def test_green_fraction_is_gamma_and_keyed() -> None:
    key = WatermarkKey.from_seed(1)
    proc = WatermarkProcessor(key, CFG, VOCAB)
    mask = proc.green_mask(np.arange(400).reshape(200, 2))
    assert abs(mask.mean() - CFG.gamma) < 0.01
    other = WatermarkProcessor(WatermarkKey.from_seed(2), CFG, VOCAB).green_mask(
        np.arange(400).reshape(200, 2)
    )
    assert 0.05 < (mask & other).mean() < 0.08  # independent keys overlap ~ gamma^2
    # the same context gives the same green list; depends on the context
    again = proc.green_mask(np.array([[0, 1], [5, 7]]))
    assert (again[0] == mask[0]).all()
    assert (again[0] != again[1]).any()


def test_processor_biases_exactly_green_logits() -> None:
    proc = WatermarkProcessor(WatermarkKey.from_seed(3), CFG, VOCAB)
    ids = np.array([[3, 4], [9, 9]])
    logits = np.zeros((2, VOCAB))
    out = proc(ids, logits)
    assert set(np.unique(out)) == {0.0, CFG.delta}
    assert (out == CFG.delta).sum() == proc.green_mask(ids).sum()
    # too little context: unbiased
    assert (proc(np.array([[3]]), np.zeros((1, VOCAB))) == 0).all()


def test_watermarked_sequences_get_tiny_p_and_plain_do_not() -> None:
    key = WatermarkKey.from_seed(4)
    proc = WatermarkProcessor(key, CFG, VOCAB)
    marked = _sample_sequences(proc, 20, 30, seed=1)
    plain = _sample_sequences(None, 20, 30, seed=1)
    det = detect_keys(list(marked.astype(np.uint64)), key, CFG)
    assert det.p_value < 1e-30 and det.z > 10
    assert detect_keys(list(plain.astype(np.uint64)), key, CFG).p_value > 1e-3
    # a different key sees nothing in the watermarked text
    assert (
        detect_keys(list(marked.astype(np.uint64)), WatermarkKey.from_seed(5), CFG).p_value > 1e-3
    )


def test_dedup_scores_each_window_once() -> None:
    key = WatermarkKey.from_seed(6)
    proc = WatermarkProcessor(key, CFG, VOCAB)
    one = _sample_sequences(proc, 1, 40, seed=2)[0].astype(np.uint64)
    single = detect_keys([one], key, CFG)
    repeated = detect_keys([one] * 50, key, CFG)
    assert repeated.n_scored == single.n_scored and repeated.n_green == single.n_green
    assert repeated.n_tokens == 50 * single.n_tokens
    no_dedup = detect_keys([one] * 50, key, CFG, dedup=False)
    assert no_dedup.n_scored == 50 * single.n_scored
    assert no_dedup.p_value < single.p_value  # repetition inflates evidence without dedup


def test_null_p_values_uniform_over_keys() -> None:
    plain = list(_sample_sequences(None, 30, 40, seed=3).astype(np.uint64))
    pvals = [detect_keys(plain, WatermarkKey.from_seed(100 + i), CFG).p_value for i in range(200)]
    assert kstest(pvals, "uniform").pvalue > 0.01


def test_text_round_trip_and_text_detection() -> None:
    text = "Hello, world! It's (really) fine: isn't it? Yes."
    assert split_words(join_words(split_words(text))) == split_words(text)
    key = WatermarkKey.from_seed(7)
    words = [f"w{i}" for i in range(VOCAB)]
    proc = WatermarkProcessor(key, CFG, VOCAB, token_key_array(words))
    marked = _sample_sequences(proc, 10, 40, seed=4)
    texts = [join_words(words[i] for i in row) for row in marked]
    assert detect_text(texts, key, CFG).p_value < 1e-20
    assert detect_text(texts, WatermarkKey.from_seed(8), CFG).p_value > 1e-3


def test_torch_processor_matches_numpy() -> None:
    torch = pytest.importorskip("torch")
    proc = WatermarkProcessor(WatermarkKey.from_seed(9), CFG, VOCAB)
    ids = np.array([[1, 2, 3], [4, 5, 6]])
    logits = np.random.default_rng(0).normal(size=(2, VOCAB)).astype(np.float32)
    out = proc.apply_torch(torch.from_numpy(ids), torch.from_numpy(logits))
    assert np.allclose(out.numpy(), proc(ids, logits))


def test_hf_adapter_when_transformers_installed() -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    proc = WatermarkProcessor(WatermarkKey.from_seed(10), CFG, VOCAB)
    hf = proc.hf_processor()
    assert isinstance(hf, transformers.LogitsProcessor)
    ids = torch.tensor([[1, 2, 3]])
    scores = torch.zeros(1, VOCAB)
    assert torch.equal(hf(ids, scores), proc.apply_torch(ids, scores))


def test_key_file_round_trip(tmp_path) -> None:
    key = new_key("k1")
    path = tmp_path / "key.json"
    save_key(key, path, CFG.as_dict())
    loaded, params = load_key(path)
    assert loaded == key and params["context_width"] == 2
    assert (
        GreenList(loaded, CFG).context_hash(np.array([[1, 2]], dtype=np.uint64))[0]
        == GreenList(key, CFG).context_hash(np.array([[1, 2]], dtype=np.uint64))[0]
    )
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UserError):
        load_key(tmp_path / "bad.json")
    with pytest.raises(UserError):
        WatermarkConfig(gamma=1.5)


def test_hf_generate_with_tiny_random_model_is_detected() -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=16, n_layer=1, n_head=2
    )
    model = transformers.GPT2LMHeadModel(config).eval()  # random weights: nothing downloaded
    key = WatermarkKey.from_seed(11)
    proc = WatermarkProcessor(key, CFG, VOCAB)
    prompts = torch.randint(0, VOCAB, (8, 2))
    kwargs = {
        "do_sample": True,
        "max_new_tokens": 40,
        "min_new_tokens": 40,
        "top_k": 0,
        "pad_token_id": 0,
    }
    marked = model.generate(
        prompts, logits_processor=transformers.LogitsProcessorList([proc.hf_processor()]), **kwargs
    )
    plain = model.generate(prompts, **kwargs)
    assert detect_ids(marked.tolist(), proc.token_keys, key, CFG).p_value < 1e-10
    assert detect_ids(plain.tolist(), proc.token_keys, key, CFG).p_value > 1e-3

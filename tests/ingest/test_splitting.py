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


def test_a_chunk_starting_inside_a_list_repeats_the_list_intro(minilm):
    # The expense-type codes of the claim form guide: the intro ends one chunk and the items
    # start the next; without the intro, "H10 Hotel" matches no question about expense codes.
    items = "\n".join(
        f"- X{n}0 Expense type number {n} with a longer description of what it covers"
        for n in range(1, 13)
    )
    text = (
        "Filler sentence about something else entirely. "
        * 14
        + "\nAdd one line per receipt and choose the expense type. Each type has a code that "
        "Finance uses for\naccounting:\n" + items + "\n\nAfter the list comes a closing paragraph."
    )
    chunks = TokenSplitter(minilm, chunk_size=64, chunk_overlap=8).split(text)
    intro = (
        "Add one line per receipt and choose the expense type. Each type has a code that "
        "Finance uses for accounting:"
    )
    starting_in_list = [c for c in chunks if c.startswith(intro + "\n- X")]
    assert starting_in_list, chunks
    last_items = [c for c in chunks if "- X120 " in c]
    assert all(c.startswith(intro) or "accounting:" in c for c in last_items)
    # the chunk after the list (a paragraph) gets nothing, and nothing exceeds the limit
    assert not any(
        c.startswith(intro) and "closing paragraph" in c and "- X" not in c for c in chunks
    )
    assert max(minilm.count_tokens(c) for c in chunks) <= 254


def test_list_intro_is_not_carried_after_a_paragraph(minilm):
    text = "Intro of the list:\n- one\n- two\n\nA closing paragraph. " + "Words here. " * 40
    chunks = TokenSplitter(minilm, chunk_size=32, chunk_overlap=0).split(text)
    assert sum("Intro of the list:" in c for c in chunks) == 1


def test_a_chunk_starting_with_the_wrapped_rest_of_an_item_also_gets_the_intro(minilm):
    # pypdf wraps long items: the overlap may start the next chunk in the middle of one
    splitter = TokenSplitter(minilm, chunk_size=64, chunk_overlap=8)
    previous = "Some text.\nEach type has a code:\n- T10 Train; T40 Private car\n  mileage; T50 Car"
    chunks = splitter._carry_list_intros([previous, "mileage; T50 Car\n- H10 Hotel"])
    # the wrapped rest of T40, which the previous chunk holds, gives way to the intro
    assert chunks[1] == "Some text. Each type has a code:\n- H10 Hotel"
    # text before the first item that only this chunk holds is never dropped
    chunks = splitter._carry_list_intros([previous, "rental and tolls.\n- H10 Hotel"])
    assert chunks[1] == "rental and tolls.\n- H10 Hotel"
    # a new paragraph after the list is not part of it
    chunks = splitter._carry_list_intros([previous, "The next section starts here."])
    assert chunks[1] == "The next section starts here."

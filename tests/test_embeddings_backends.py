"""RAG_EMBED_BACKEND: the local model on torch, ONNX Runtime (fp32) or ONNX Runtime int8."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from rag_app import onnx_encoder
from rag_app.app import App, build_embeddings
from rag_app.embeddings import LocalEmbeddings, bundled_minilm_path
from rag_app.errors import ConfigError, MissingPackageError
from rag_app.settings import Settings

TEXTS = [
    "What is the parental leave policy?",
    "Halcyon's HR-200 robot carries 600 kg across warehouse floors; its lidar sees 40 m.",
    "",
    "Ünïcödé, emoji 🙂 and CJK 漢字 survive tokenisation.",
    # longer than the model's 256 tokens: both backends truncate it the same way
    " ".join(f"Sentence {i} about vitamin D, bone density and fracture risk." for i in range(80)),
]


# -- settings ---------------------------------------------------------------------------------
def test_backend_setting_validates(monkeypatch):
    assert Settings(embed_backend="onnx").embed_backend == "onnx"
    monkeypatch.setenv("RAG_EMBED_BACKEND", "onnx-int8")
    assert Settings().embed_backend == "onnx-int8"
    monkeypatch.setenv("RAG_EMBED_BACKEND", "tensorrt")
    with pytest.raises(ValidationError, match="embed_backend"):
        Settings()


def test_build_embeddings_passes_backend_and_cache(tmp_path):
    emb = build_embeddings(Settings(embed_backend="onnx-int8", embed_cache_dir=tmp_path))
    assert isinstance(emb, LocalEmbeddings)
    assert emb.backend == "onnx-int8"
    assert emb.cache_dir == tmp_path
    assert emb._model is None  # nothing loaded or exported yet


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown embedding backend"):
        LocalEmbeddings(backend="cuda")  # type: ignore[arg-type]


def test_model_name_differs_where_vectors_differ():
    torch_name = LocalEmbeddings(backend="torch").name
    assert torch_name == "all-MiniLM-L6-v2"
    # fp32 ONNX gives torch's vectors up to float rounding (bench/bench_encoder.py): an index
    # built with either is the same model's
    assert LocalEmbeddings(backend="onnx").name == torch_name
    # int8 vectors are not torch's: another name, so a store never mixes the two
    assert LocalEmbeddings(backend="onnx-int8").name == "all-MiniLM-L6-v2+onnx-int8"


def test_ingest_fingerprint_records_the_backend(tmp_path):
    def fingerprint(backend: str) -> str:
        settings = Settings(data_dir=tmp_path / backend, embed_backend=backend)
        return App(settings).ingestor.settings_fingerprint

    prints = {b: fingerprint(b) for b in ("torch", "onnx", "onnx-int8")}
    assert len(set(prints.values())) == 3  # switching backend re-embeds on the next ingest


def test_a_collection_never_mixes_int8_and_float_vectors(tmp_path):
    def store(backend: str):
        return App(Settings(data_dir=tmp_path, embed_backend=backend)).store

    store("torch")  # creates the collection, recording the model's name
    store("onnx")  # the same vectors: the same collection opens
    with pytest.raises(ConfigError, match="set RAG_EMBED_BACKEND back"):
        store("onnx-int8")


# -- missing packages ---------------------------------------------------------------------------
def test_missing_onnxruntime_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    emb = LocalEmbeddings(backend="onnx", cache_dir=tmp_path)
    with pytest.raises(MissingPackageError, match=r"pip install 'onnxruntime'") as info:
        emb.embed_query("hello")
    assert "RAG_EMBED_BACKEND=onnx" in str(info.value)


def test_missing_export_package_names_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingPackageError, match=r"pip install 'onnx'"):
        onnx_encoder.ensure_export(bundled_minilm_path(), "onnx-int8", tmp_path)


# -- the export cache (a stand-in exporter: no model is loaded) ---------------------------------
class _FakeExporter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model_path: Path, target: Path, backend: str) -> None:
        self.calls += 1
        (target / onnx_encoder.MODEL_FILE).write_bytes(b"onnx" * 1000 + backend.encode())


def test_export_is_cached_and_a_broken_entry_is_rebuilt(tmp_path):
    model = bundled_minilm_path()
    exporter = _FakeExporter()
    first = onnx_encoder.ensure_export(model, "onnx", tmp_path, exporter=exporter)
    assert exporter.calls == 1
    mtime = first.stat().st_mtime_ns
    again = onnx_encoder.ensure_export(model, "onnx", tmp_path, exporter=exporter)
    assert again == first
    assert exporter.calls == 1  # reused
    assert again.stat().st_mtime_ns == mtime
    manifest = json.loads((first.parent / onnx_encoder.MANIFEST_FILE).read_text())
    assert manifest["size"] == first.stat().st_size

    # the int8 export is another entry
    onnx_encoder.ensure_export(model, "onnx-int8", tmp_path, exporter=exporter)
    assert exporter.calls == 2

    # a truncated file (an interrupted copy) is exported again
    first.write_bytes(first.read_bytes()[:100])
    onnx_encoder.ensure_export(model, "onnx", tmp_path, exporter=exporter)
    assert exporter.calls == 3
    # so is an entry without its manifest (the manifest is written last)
    (first.parent / onnx_encoder.MANIFEST_FILE).unlink()
    rebuilt = onnx_encoder.ensure_export(model, "onnx", tmp_path, exporter=exporter)
    assert exporter.calls == 4
    assert rebuilt == first
    assert onnx_encoder._valid_entry(rebuilt.parent)
    # no temporary folders are left behind
    assert sorted(p.name.startswith(".") for p in tmp_path.iterdir()) == [False, False]


def test_an_export_removes_entries_whose_model_is_gone(tmp_path):
    """Each install of the model package gets its own entry; one whose model folder was
    deleted (an old virtual environment) goes at the next export, nothing else does."""
    cache = tmp_path / "cache"
    cache.mkdir()

    def entry(name: str, model_path: str) -> Path:
        folder = cache / name
        folder.mkdir()
        (folder / onnx_encoder.MODEL_FILE).write_bytes(b"onnx")
        manifest = {"model_path": model_path, "backend": "onnx-int8", "size": 4}
        (folder / onnx_encoder.MANIFEST_FILE).write_text(json.dumps(manifest))
        return folder

    orphan = entry("model-onnx-int8-aaaaaaaaaaaaaaaa", str(tmp_path / "deleted-venv/model"))
    alive_model = tmp_path / "other-venv/model"
    alive_model.mkdir(parents=True)
    alive = entry("model-onnx-int8-bbbbbbbbbbbbbbbb", str(alive_model))
    foreign = cache / "notes"
    foreign.mkdir()  # not an export: no manifest
    (cache / "model-onnx-cccccccccccccccc").mkdir()  # a manifest-less (partial) entry
    exporter = _FakeExporter()
    path = onnx_encoder.ensure_export(bundled_minilm_path(), "onnx-int8", cache, exporter=exporter)
    assert exporter.calls == 1 and path.exists()
    assert not orphan.exists()
    assert alive.exists() and foreign.exists() and (cache / "model-onnx-cccccccccccccccc").exists()
    # reusing an entry prunes nothing (only an export does)
    orphan = entry("model-onnx-int8-dddddddddddddddd", str(tmp_path / "gone/model"))
    onnx_encoder.ensure_export(bundled_minilm_path(), "onnx-int8", cache, exporter=exporter)
    assert exporter.calls == 1 and orphan.exists()


def test_a_failed_export_leaves_no_entry(tmp_path):
    def broken(model_path: Path, target: Path, backend: str) -> None:
        (target / onnx_encoder.MODEL_FILE).write_bytes(b"half")
        raise RuntimeError("export crashed")

    with pytest.raises(RuntimeError, match="export crashed"):
        onnx_encoder.ensure_export(bundled_minilm_path(), "onnx", tmp_path, exporter=broken)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_cache_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="RAG_EMBED_CACHE_DIR"):
        onnx_encoder.ensure_export(
            bundled_minilm_path(), "onnx", blocker / "cache", exporter=_FakeExporter()
        )


# -- the real model -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return np.asarray(LocalEmbeddings(backend="torch").embed_documents(TEXTS))


@pytest.mark.slow
def test_onnx_vectors_match_torch(onnx_cache, torch_vectors):
    emb = LocalEmbeddings(backend="onnx", cache_dir=onnx_cache)
    vectors = np.asarray(emb.embed_documents(TEXTS))
    assert vectors.shape == torch_vectors.shape
    cosines = (vectors * torch_vectors).sum(1)
    assert cosines.min() > 0.999
    assert np.abs(vectors - torch_vectors).max() < 1e-4
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # one text alone (no padding) gives the same vector as within a padded batch
    assert np.allclose(emb.embed_query(TEXTS[1]), vectors[1], atol=1e-5)


@pytest.mark.slow
def test_onnx_int8_vectors_are_close(onnx_cache, torch_vectors):
    emb = LocalEmbeddings(backend="onnx-int8", cache_dir=onnx_cache)
    vectors = np.asarray(emb.embed_documents(TEXTS))
    cosines = (vectors * torch_vectors).sum(1)
    assert np.median(cosines) > 0.99
    assert cosines.min() > 0.95  # the empty text ([CLS] [SEP] only) moves the most
    assert emb.model.model_file.stat().st_size < 30_000_000  # int8 weights: 4x smaller


@pytest.mark.slow
def test_unfused_export_uses_only_standard_operators(onnx_cache, tmp_path):
    """`fuse=False` (what bench/bench_quant.py hands to other runtimes) keeps the exporter's
    graph: no ONNX Runtime (com.microsoft) operators, where the app's export has them."""
    import onnx

    onnx_encoder.export_onnx(bundled_minilm_path(), tmp_path, "onnx", fuse=False)
    plain = onnx.load(str(tmp_path / onnx_encoder.MODEL_FILE))
    assert {node.domain for node in plain.graph.node} <= {"", "ai.onnx"}
    assert "MatMul" in {node.op_type for node in plain.graph.node}
    fused_file = LocalEmbeddings(backend="onnx", cache_dir=onnx_cache).model.model_file
    fused = onnx.load(str(fused_file))
    assert "com.microsoft" in {node.domain for node in fused.graph.node}


@pytest.mark.slow
def test_onnx_tokenisation_matches_sentence_transformers(onnx_cache):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(bundled_minilm_path()), device="cpu", local_files_only=True)
    encoder = LocalEmbeddings(backend="onnx", cache_dir=onnx_cache).model
    theirs = st.tokenize(TEXTS)
    ours = encoder.tokenizer.encode_batch(TEXTS)
    assert theirs["input_ids"].tolist() == [e.ids for e in ours]
    assert theirs["attention_mask"].tolist() == [e.attention_mask for e in ours]


@pytest.mark.slow
def test_real_export_is_reused_and_rebuilt_when_partial(onnx_cache):
    LocalEmbeddings(backend="onnx", cache_dir=onnx_cache).embed_query("warm")
    count = onnx_encoder.export_count
    model_file = LocalEmbeddings(backend="onnx", cache_dir=onnx_cache).model.model_file
    mtime = model_file.stat().st_mtime_ns
    assert onnx_encoder.export_count == count  # the second load did not export
    assert model_file.stat().st_mtime_ns == mtime

    (model_file.parent / onnx_encoder.MANIFEST_FILE).unlink()  # as if the export was cut short
    emb = LocalEmbeddings(backend="onnx", cache_dir=onnx_cache)
    assert len(emb.embed_query("rebuilt")) == 384
    assert onnx_encoder.export_count == count + 1
    assert onnx_encoder._valid_entry(model_file.parent)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_batches_side_by_side_give_the_vectors_of_one_session(onnx_cache, backend):
    """An ingest encodes its batches on one single-threaded session per core: the rows come
    back in the input order, equal to one session's, whatever the number of batches."""
    encoder = LocalEmbeddings(backend=backend, cache_dir=onnx_cache).model
    texts = [f"{t} ({n})" * (1 + n % 5) for n, t in enumerate(TEXTS * 7)]
    encoder.workers = 1
    alone = encoder.encode(texts, batch_size=4)
    encoder.workers = 3  # 3 lanes over ceil(n/4) batches rounded up to a multiple of 3
    side_by_side = encoder.encode(texts, batch_size=4)
    assert len(encoder._worker_sessions) == 3
    assert np.allclose(alone, side_by_side, atol=1e-6)
    if backend == "onnx":
        # fp32: a text's vector does not depend on its batch, so each row is its own text's
        one_by_one = np.stack([encoder.encode([t])[0] for t in texts[:8]])
        assert np.allclose(one_by_one, side_by_side[:8], atol=1e-5)


@pytest.mark.slow
def test_int8_vectors_depend_a_little_on_the_batch(onnx_cache):
    """Dynamic int8 quantises each batch's activations with one scale, so a text's vector
    moves a little with its batch neighbours (documented in the README); never by much."""
    encoder = LocalEmbeddings(backend="onnx-int8", cache_dir=onnx_cache).model
    texts = [f"{t} ({n})" * (1 + n % 5) for n, t in enumerate(TEXTS * 3)]
    batched = encoder.encode(texts, batch_size=64)
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    cosines = (batched * alone).sum(1)
    assert cosines.min() > 0.98  # 0.987 seen (a short text padded among long ones)
    assert np.median(cosines) > 0.99

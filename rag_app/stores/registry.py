"""The registry of store adapters: a store is one module that exposes a `StoreSpec`.

Built-in adapters are listed here by module path and imported only when chosen (their SDKs
are optional extras). A third-party package adds a store by declaring an entry point in the
``rag_app.stores`` group whose object is a `StoreSpec`, e.g. in its ``pyproject.toml``::

    [project.entry-points."rag_app.stores"]
    milvus = "rag_milvus.adapter:SPEC"

The spec owns everything store-specific: its settings model (read from the environment with
its own prefix, overridable with ``Settings.store_options``), how to open the store, and the
string that identifies the physical index (so ingest state never mixes two stores).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from rag_app.errors import ConfigError

if TYPE_CHECKING:
    from rag_app.settings import Settings
    from rag_app.stores.base import VectorStorePort

ENTRY_POINT_GROUP = "rag_app.stores"
BUILTIN: dict[str, tuple[str, str]] = {
    # name -> (module exposing SPEC, pip extra that installs its SDK)
    "chroma": ("rag_app.stores.chroma", ""),
    "pinecone": ("rag_app.stores.pinecone", "pinecone"),
    "weaviate": ("rag_app.stores.weaviate", "weaviate"),
}


@dataclass(frozen=True)
class OpenRequest:
    """What an adapter gets to open its store."""

    settings: Settings
    options: Any  # the adapter's own settings model, validated
    dimension: int
    embedding_model: str


@dataclass(frozen=True)
class StoreSpec:
    name: str
    settings_model: type[BaseModel]
    open: Callable[[OpenRequest], VectorStorePort]
    location: Callable[[Settings, Any], str]


def available() -> list[str]:
    names = set(BUILTIN)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def spec(name: str) -> StoreSpec:
    """The adapter spec of store `name` (a clear error when unknown or not installed)."""
    if name in BUILTIN:
        module_name, extra = BUILTIN[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = f"pip install 'rag_app[{extra}]'" if extra else "reinstall rag_app"
            raise ConfigError(
                f"store {name!r} needs packages that are not installed ({exc.name or exc}); "
                f"install them with: {hint}"
            ) from exc
        found = getattr(module, "SPEC", None)
    else:
        matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not matches:
            raise ConfigError(
                f"unknown store {name!r}; available: {', '.join(available())} (RAG_STORE)"
            )
        try:
            found = matches[0].load()
        except Exception as exc:
            raise ConfigError(f"store plugin {name!r} failed to load: {exc}") from exc
    if not isinstance(found, StoreSpec):
        raise ConfigError(f"store {name!r} does not provide a StoreSpec")
    return found


def options(settings: Settings, store_spec: StoreSpec) -> Any:
    """The adapter's settings: its environment variables, overridden by
    ``settings.store_options``."""
    overrides: Mapping[str, Any] = settings.store_options
    try:
        return store_spec.settings_model(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or store_spec.name}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid {store_spec.name} settings: {problems}") from exc


def open_store(settings: Settings, *, dimension: int, embedding_model: str) -> VectorStorePort:
    """Open the configured store (RAG_STORE)."""
    store_spec = spec(settings.store)
    request = OpenRequest(settings, options(settings, store_spec), dimension, embedding_model)
    return store_spec.open(request)


def store_location(settings: Settings) -> str:
    """Identifies the physical index of the configured store."""
    store_spec = spec(settings.store)
    return store_spec.location(settings, options(settings, store_spec))

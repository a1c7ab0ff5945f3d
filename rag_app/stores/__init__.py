"""Vector store adapters: one module per store, found through `rag_app.stores.registry`."""

from rag_app.stores.registry import open_store, store_location

__all__ = ["open_store", "store_location"]

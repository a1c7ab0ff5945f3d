"""Permission-aware search: raw retrievers (dense, BM25, fused, a store's native hybrid)
behind one permission guard (import the submodules)."""

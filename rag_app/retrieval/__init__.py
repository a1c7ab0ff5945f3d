"""Filters, permissions and permission-aware search (import the submodules)."""

"""Operator tools: verification of the index against the ingest state, export and import."""

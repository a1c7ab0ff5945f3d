"""Retrieval evaluation: datasets (BEIR, RAGAS-style JSONL), metrics (ir-measures, RAGAS
without an LLM), runs, reports and comparisons. Entry point: ``rag-app eval``."""

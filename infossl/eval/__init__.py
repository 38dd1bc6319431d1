"""Evaluation: probes, kNN, retrieval, diagnostics."""

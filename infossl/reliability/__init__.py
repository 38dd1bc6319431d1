"""Fault tolerance: atomic checkpoints, safe loading, resume, preemption, bad data."""

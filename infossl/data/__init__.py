"""Datasets, transforms and the datamodule."""

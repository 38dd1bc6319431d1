"""Evaluation: collapse diagnostics (``diagnostics``), weighted kNN (``knn``), frozen-feature
linear probe (``linear``); the collapse monitor callback (``monitor``) and the offline
``eval_linear.py`` driver (``offline``) build on them."""

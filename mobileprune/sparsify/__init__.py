"""Unstructured sparsity: individual weights zeroed and kept zero by masks (`mobileprune sparsify`).

masks.py (which layers, masks held through training) → selection.py (scores to masks) → methods/ (magnitude,
gradual, lottery, obs, hybrid) → run.py (the pipeline) → finish.py (report, per layer and for XNNPACK).
"""

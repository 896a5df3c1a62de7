"""Retraining: the one loop (`loop.py`), distillation losses (`distill.py`) and image data (`data.py`)."""

"""Layer 2 — the network: the two-head model on a Hugging Face encoder, checkpoint loading and validation,
the windowed DeBERTa attention bias. Imports ``config`` and ``data``."""

"""Layer 3 — arrays in, numbers, tables and figures out: sklearn metrics, evaluation tables, the diagnosis,
the summary and the plots. Imports ``config`` and ``data``; knows nothing of training."""

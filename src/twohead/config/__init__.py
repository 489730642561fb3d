"""Layer 0 — what a run is told: typed params (``params.yaml``), the paths of ``dvc.yaml``, the error types,
the names of history columns and metrics, and the switches. Imports nothing else of twohead."""

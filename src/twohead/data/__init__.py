"""Layer 1 — rows and files: reading and validating the raw table, labels and splits, class weights and
frequency bands, tokenization, length-grouped batches, atomic file writes. Imports only ``config``."""

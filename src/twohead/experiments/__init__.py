"""Layer 5 — comparing and choosing runs: paired statistics, ``twohead compare``, the ablation, the LR range
test. Imports the layers below; the pipeline stages never import it back."""

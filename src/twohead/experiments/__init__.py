"""Layer 5 — comparing and choosing runs: paired statistics, ``twohead compare``, the ablation, the LR range
test. Imports the layers below; nothing below imports it."""

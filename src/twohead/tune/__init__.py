"""Tools that tune a run before it is spent, each one module holding its method, the run that does the work and the
lines it prints: :mod:`~twohead.tune.lr_sweep` and :mod:`~twohead.tune.lr_range` (``twohead lr-find``),
:mod:`~twohead.tune.speed` (``twohead speed``). They train what the stage would train (:mod:`twohead.train.recipe`)
with the training step of :mod:`twohead.train.step`, and write only their own JSON and PNG.
"""

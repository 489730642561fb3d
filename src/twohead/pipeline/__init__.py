"""The DVC stages, one module each: what the stage reads and writes, around the reusable library.

Every stage module here exposes ``<Stage>Paths`` (the stage's files, passed on the command line from
``dvc.yaml`` — their one home) and ``run(params, paths)``; :mod:`~twohead.pipeline.stage_main` is the entry
every ``stages/*.py`` script shares. Nothing else lives here: the tools that are not stages are in
:mod:`twohead.tune`, and the library modules of :mod:`twohead` (model, losses, fit, metrics, …) never import from
here, so a notebook or the ``twohead`` command can use them without any stage I/O.
"""

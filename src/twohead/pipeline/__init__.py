"""Stage orchestration: what each DVC stage reads and writes, around the reusable library.

Every module here exposes ``<Stage>Paths`` (the stage's files, passed on the command line from
``dvc.yaml`` — their one home) and ``run(params, paths)``. The library modules of :mod:`twohead`
(model, losses, fit, metrics, …) never import from here, so a notebook or the ``twohead`` command can
use them without any stage I/O.
"""

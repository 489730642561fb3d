"""Layer 4 — training: the loss, the optimiser groups and schedule, the switches, one epoch, ``fit`` with
its callbacks, resumable state, the device. Imports the layers below."""

"""Pure metric functions (CKA, MIA, linear probes, k-NN, accuracy).

Import the submodules directly, e.g. ``from engine.metrics.cka import linear_cka``.
"""

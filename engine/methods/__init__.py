"""Unlearning methods, registered by name. Importing this package registers all of them."""
from .base import Method, create_method, method_names, register  # noqa: F401
from . import baselines  # noqa: F401  (registers ft, ga, neggrad_plus, rl, l1_sparse, salun, scrub, boundary_shrink, retrain)
from .ec import method as _ec  # noqa: F401  (registers ec, cu)

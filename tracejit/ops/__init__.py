"""Operation definitions, one module per family.

Each op is defined once: its type rule (``make_node``), shape rule
(``infer_shape``), NumPy reference (``perform``) and gradient (``grad``).
The public constructors are gathered in ``tracejit.tensor``.
"""

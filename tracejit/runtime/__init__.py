"""Turning graphs into callables: the reference interpreter, tj.function, shared, eval."""

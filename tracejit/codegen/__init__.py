"""The C backend: render kernels to C, build them, cache and load the modules.

Submodules are imported on demand (``tracejit.codegen.build`` and friends)
so that importing this package costs nothing.
"""

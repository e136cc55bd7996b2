"""Native kernels for the linalg ops (registered with tracejit.codegen.native)."""

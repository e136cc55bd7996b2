"""Native kernels for the shape ops (registered with tracejit.codegen.native)."""

"""Native kernels for the indexing ops (registered with tracejit.codegen.native)."""

"""Native kernels for the nnet ops (registered with tracejit.codegen.native)."""

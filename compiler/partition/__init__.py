"""cimforge.compiler.partition."""

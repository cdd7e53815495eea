"""cimforge.compiler."""

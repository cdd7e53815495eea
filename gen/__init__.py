"""cimforge.gen."""

"""cimforge.sim."""

"""cimforge.golden."""

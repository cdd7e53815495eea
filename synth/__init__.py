"""cimforge.synth."""

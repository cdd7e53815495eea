"""Per layer kind, how the compiler plans, emits and costs it (one module per kind, one registry)."""

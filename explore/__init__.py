"""Design-space exploration: ``cimforge explore`` over configurations and models, on Dask, with Pareto reports."""

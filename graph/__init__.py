"""Graph processing on the CIM fabric (GraphR): graph input, block tiling, algorithms, their golden models."""

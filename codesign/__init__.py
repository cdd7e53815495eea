"""Model co-design: SSL structured sparsity and BSQ bit-level sparsity, turned into fewer tiles and cycles."""

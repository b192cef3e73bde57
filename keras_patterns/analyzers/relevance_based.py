"""LRP and Deep Taylor analyzers (filled in by the LRP work)."""

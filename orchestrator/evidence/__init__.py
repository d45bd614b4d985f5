"""Evidence: bench, canary, gate, soak."""

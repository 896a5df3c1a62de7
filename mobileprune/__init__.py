"""mobileprune: structured pruning for mobile CNNs."""

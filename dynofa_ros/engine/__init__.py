"""Runtime engine: per-sub-network BN statistics, graph variants, the switchable SubnetPool."""

"""Offline stage: device profiling, latency LUTs, accuracy predictors, evolutionary search, Pareto front, plots."""

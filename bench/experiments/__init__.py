"""Experiment drivers on synthetic data: train, predict and score variants; run with ``python -m bench.experiments.NAME``."""

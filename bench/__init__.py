"""Benchmarks of byu_motor: scripts that print ratios measured in one run (not tests)."""

"""Benchmarks of livingai's checkpoint engine against the last release, 0.4.1.

Run `python -m benchmarks` from the repo root; see benchmarks/README.md.
"""

"""Benchmarks of passentry-bridge against a naive hand-written bridge and an I/O floor.

``python -m bench.run --quick`` or ``--full``; see bench/README.md.
"""

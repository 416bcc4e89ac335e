"""Benchmarks: tether against hand-written wiring and other DI libraries.

Run from the repository root: ``python -m benchmarks`` (``--help`` for options).
"""

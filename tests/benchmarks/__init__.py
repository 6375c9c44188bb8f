"""Benchmarks of issue 6 (not collected by pytest: bench_*.py). How to run them: README.md here."""

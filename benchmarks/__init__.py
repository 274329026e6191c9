"""Benchmarks (``make bench``): figures printed beside their baseline and goal."""

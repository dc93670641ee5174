"""Benchmarks behind `spotmatch bench ...`: each prints human lines and a JSON result."""

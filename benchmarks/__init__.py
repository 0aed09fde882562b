"""Benchmarks: each module prints a table, writes benchmarks/results/NAME.json and compares against
a baseline measured in the same run (`bash scripts/bench.sh NAME`, or `all`)."""

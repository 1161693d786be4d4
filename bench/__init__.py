"""Benchmarks and the evaluation harness (benchmarks print tables; they are not tests)."""

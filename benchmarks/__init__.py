"""Benchmark: a synthetic corpus and a side-by-side run against Orthanc (see README)."""

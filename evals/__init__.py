"""Evals: retrieval accuracy and latency on BEIR-format data sets, and the ingestion/retrieval benchmarks."""

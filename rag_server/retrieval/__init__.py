"""Retrieval: the text analyzer, the in-process BM25 index, the semantic and keyword routes and their fusion."""

"""A hybrid-retrieval RAG server with query routing, on PostgreSQL + pgvector."""

__version__ = "0.1.0"

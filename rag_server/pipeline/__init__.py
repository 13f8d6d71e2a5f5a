"""The flow of a question: `search()` (route -> retrieve -> fuse) and `ask()` (search -> rerank -> answer)."""

from rag_server.pipeline.ask import Event, Pipeline
from rag_server.pipeline.schemas import AskRequest, AskResponse

__all__ = ["AskRequest", "AskResponse", "Event", "Pipeline"]

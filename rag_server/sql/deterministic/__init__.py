"""The offline SQL generator: common analytical questions to SQL by matching them against the catalog.

It handles count / sum / avg / min / max, optionally grouped ("per plan", "by region"), filtered by equality on
known column values ("urgent", "EU") and by date ranges ("in March 2025", "in Q2 2024", "last 30 days"),
top-N ("top 5 customers by amount"), and lists with filters, over one table or a catalog-declared join. What it
cannot express it declines (SqlDeclined) instead of guessing; its output is validated like any model's.

Modules: words (vocabulary and text matching), resolve (the question against the catalog, into a plan), dates
(date ranges), plan (the plan and its joins), writer (the plan as SQL), generator (`generate` and `draft`,
re-exported here).
"""

from rag_server.sql.deterministic.generator import Draft, draft, generate
from rag_server.sql.deterministic.words import AGGREGATES
from rag_server.sql.deterministic.words import _names_value as _names_value

__all__ = ["AGGREGATES", "Draft", "draft", "generate"]

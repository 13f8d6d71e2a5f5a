"""Feedback on answers, stored beside the request's log entry, and turned into training labels.

`correct_evidence` names what held the answer: evidence numbers of that response (1 = its `[1]`) or document
ids. Each becomes a judgement (question -> document) that `train-reranker --from-feedback` learns from; an
answer marked helpful also counts its cited documents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from rag_server.errors import NotFound, RagError
from rag_server.keys import Principal
from rag_server.routing.model import ROUTER_ROUTES, LabeledQuestion


@dataclass(frozen=True)
class Labels:
    """Judgements from feedback: question id -> (question, {document id: grade})."""

    questions: dict[str, str]
    qrels: dict[str, dict[str, int]]


def add_feedback(
    conn: psycopg.Connection[Any],
    principal: Principal,
    request_id: str,
    helpful: bool,
    comment: str | None = None,
    correct_evidence: list[int | str] | None = None,
) -> int:
    """Store feedback on one of the project's requests; NotFound for a request of another project."""
    row = conn.execute("SELECT project_id, trace FROM requests WHERE id = %s", (request_id,)).fetchone()
    if row is None or (not principal.unrestricted and row[0] != principal.project_id):
        raise NotFound(
            f"no request {request_id!r} of this project (feedback needs the id of an answered request)"
        )
    evidence = row[1].get("evidence", []) if isinstance(row[1], dict) else []
    for item in correct_evidence or []:
        if isinstance(item, int) and not 1 <= item <= len(evidence):
            raise RagError(
                f"correct_evidence [{item}] is not an evidence number of that answer (1..{len(evidence)})"
            )
    found = conn.execute(
        """INSERT INTO feedback (request_id, key_id, helpful, comment, correct_evidence)
           VALUES (%s, %s, %s, %s, %s) RETURNING id""",
        (
            request_id,
            principal.key_id,
            helpful,
            comment,
            Jsonb(correct_evidence) if correct_evidence else None,
        ),
    ).fetchone()
    assert found is not None
    return int(found[0])


def labels(conn: psycopg.Connection[Any], domain: str) -> Labels:
    """The judgements that feedback on a domain's answers gives (grade 1 for each named or helpful document)."""
    rows = conn.execute(
        """SELECT r.id, r.question, r.trace, f.helpful, f.correct_evidence
           FROM feedback f JOIN requests r ON r.id = f.request_id
           WHERE r.domain = %s AND r.question IS NOT NULL ORDER BY f.id""",
        (domain,),
    ).fetchall()
    questions: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for request_id, question, trace, helpful, correct in rows:
        evidence = [item.get("document_id") for item in trace.get("evidence", [])]
        documents: set[str] = set()
        for item in correct or []:
            if isinstance(item, int) and 1 <= item <= len(evidence) and evidence[item - 1]:
                documents.add(str(evidence[item - 1]))
            elif isinstance(item, str):
                documents.add(item)
        if helpful and not correct:
            cited = {citation.get("number") for citation in trace.get("citations", [])}
            documents |= {
                str(evidence[n - 1]) for n in cited if isinstance(n, int) and 0 < n <= len(evidence)
            }
        if documents:
            questions[request_id] = question
            qrels.setdefault(request_id, {}).update(dict.fromkeys(documents, 1))
    return Labels(questions, qrels)


def write_beir(found: Labels, folder: Path, split: str = "train") -> int:
    """Write the labels as a BEIR folder (queries.jsonl, qrels/<split>.tsv) for the training commands."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as out:
        for query_id, text in found.questions.items():
            out.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    with (folder / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        for query_id, documents in found.qrels.items():
            for document, grade in documents.items():
                out.write(f"{query_id}\t{document}\t{grade}\n")
    return len(found.questions)


def route_labels(conn: psycopg.Connection[Any], domain: str) -> list[LabeledQuestion]:
    """Questions of the domain whose answer was marked helpful, labeled with the route that answered them:
    rows for `train-router --from-feedback` (an unhelpful answer says the route was wrong, not which was right)."""
    rows = conn.execute(
        """SELECT DISTINCT ON (r.question) r.question, r.route
           FROM feedback f JOIN requests r ON r.id = f.request_id
           WHERE r.domain = %s AND r.question IS NOT NULL AND f.helpful
             AND r.route = ANY(%s)
           ORDER BY r.question, f.id DESC""",
        (domain, list(ROUTER_ROUTES)),
    ).fetchall()
    return [LabeledQuestion(question, route, None) for question, route in rows]

"""Reading BEIR-format folders: queries, qrels, the errors on malformed files, and the demo set."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from evals.beir import DatasetError, EvalQuery, load_qrels, load_queries

REPO = Path(__file__).resolve().parents[2]
DEMO_SET = REPO / "evals" / "sets" / "demo"
DEMO_CORPUS = REPO / "rag_server" / "demo" / "corpus"

HEADER = "query-id\tcorpus-id\tscore\n"


def _write_set(folder: Path, queries: list[object] | str, qrels: str, split: str = "test") -> Path:
    """A BEIR folder: queries as JSON objects (one a line) or raw text, and the qrels file's text."""
    folder.mkdir(parents=True, exist_ok=True)
    text = queries if isinstance(queries, str) else "".join(json.dumps(q) + "\n" for q in queries)
    (folder / "queries.jsonl").write_text(text, encoding="utf-8")
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / f"{split}.tsv").write_text(qrels, encoding="utf-8")
    return folder


def test_loads_judged_queries_in_file_order(tmp_path: Path) -> None:
    folder = _write_set(
        tmp_path,
        [
            {"_id": "q2", "text": "second", "kind": "identifier"},
            {"_id": "q1", "text": "first", "metadata": {"source": "x"}},  # extra fields are ignored
            {"_id": "q3", "text": "only a zero judgement"},
            {"_id": "q4", "text": "not judged at all"},
            {"_id": 5, "text": "numeric id", "kind": None},
        ],
        HEADER + "q1\td1\t1\nq2\td2\t2\nq2\td3\t0\nq3\td1\t0\n5\td9\t1\n",
    )
    assert load_queries(folder) == [
        EvalQuery("q2", "second", "identifier"),
        EvalQuery("q1", "first", None),
        EvalQuery("5", "numeric id", None),
    ]
    # load_qrels keeps every judgement, zero scores included (metrics treat them as non-relevant)
    assert load_qrels(folder) == {
        "q1": {"d1": 1},
        "q2": {"d2": 2, "d3": 0},
        "q3": {"d1": 0},
        "5": {"d9": 1},
    }


def test_headerless_qrels_crlf_bom_and_blank_lines(tmp_path: Path) -> None:
    # Some BEIR copies drop the header; files edited on Windows carry a BOM and CRLF line ends.
    folder = _write_set(
        tmp_path,
        '\ufeff{"_id": "q1", "text": "a"}\r\n\r\n{"_id": "q2", "text": "b"}\r\n',
        "\ufeffq1\td1\t2\r\n\r\nq2\td2\t1\r\n",
    )
    assert [q.id for q in load_queries(folder)] == ["q1", "q2"]
    assert load_qrels(folder) == {"q1": {"d1": 2}, "q2": {"d2": 1}}


def test_other_split(tmp_path: Path) -> None:
    folder = _write_set(tmp_path, [{"_id": "q1", "text": "a"}], HEADER + "q1\td1\t1\n", split="dev")
    assert load_qrels(folder, split="dev") == {"q1": {"d1": 1}}
    assert load_queries(folder, split="dev") == [EvalQuery("q1", "a", None)]
    with pytest.raises(DatasetError, match=r"qrels/test\.tsv: no such file"):
        load_qrels(folder)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"qrels/test\.tsv: no such file") as raised:
        load_qrels(tmp_path)
    assert str(tmp_path) in str(raised.value)
    assert isinstance(raised.value, ValueError)
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text(HEADER + "q1\td1\t1\n")
    with pytest.raises(DatasetError, match=r"queries\.jsonl: no such file"):
        load_queries(tmp_path)


@pytest.mark.parametrize(
    ("queries", "message"),
    [
        ('{"_id": "q1", "text": "a"}\n\n{"_id": "q2", "text": }\n', r"queries\.jsonl:3: invalid JSON"),
        ('{"_id": "q1", "text": "a"}\n["q2", "b"]\n', r"queries\.jsonl:2: expected a JSON object, got list"),
        ('{"text": "a"}\n', r"queries\.jsonl:1: missing field '_id'"),
        ('{"_id": "q1"}\n', r"queries\.jsonl:1: missing field 'text'"),
        ('{"_id": "", "text": "a"}\n', r"queries\.jsonl:1: _id must be a non-empty string"),
        ('{"_id": true, "text": "a"}\n', r"queries\.jsonl:1: _id must be a non-empty string"),
        ('{"_id": "q1", "text": 3}\n', r"queries\.jsonl:1: text must be a string, got int"),
        ('{"_id": "q1", "text": "a", "kind": 1}\n', r"queries\.jsonl:1: kind must be a string"),
        (
            '{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "b"}\n',
            r"queries\.jsonl:2: duplicate query _id 'q1'",
        ),
    ],
)
def test_malformed_queries(tmp_path: Path, queries: str, message: str) -> None:
    folder = _write_set(tmp_path, queries, HEADER + "q1\td1\t1\n")
    with pytest.raises(DatasetError, match=message) as raised:
        load_queries(folder)
    assert str(folder / "queries.jsonl") in str(raised.value)


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ("query-id\tcorpus-id\n", r"test\.tsv:1: header is missing column\(s\) score"),
        ("query-id\tscore\tcorpus-id\n", r"test\.tsv:1: header must be query-id corpus-id score"),
        (HEADER + "q1\td1\t1\nq2\td2\n", r"test\.tsv:3: expected 3 tab-separated columns .* got 2"),
        (HEADER + "q1 d1 1\n", r"test\.tsv:2: expected 3 tab-separated columns .* got 1"),
        (HEADER + "q1\td1\t1\textra\n", r"test\.tsv:2: expected 3 tab-separated columns .* got 4"),
        (HEADER + "q1\td1\thigh\n", r"test\.tsv:2: score 'high' is not an integer"),
        (HEADER + "q1\td1\t0.5\n", r"test\.tsv:2: score '0.5' is not an integer"),
        (HEADER + "\td1\t1\n", r"test\.tsv:2: empty query-id or corpus-id"),
        (HEADER, r"test\.tsv: no judgements"),
        ("", r"test\.tsv: no judgements"),
    ],
)
def test_malformed_qrels(tmp_path: Path, qrels: str, message: str) -> None:
    folder = _write_set(tmp_path, [{"_id": "q1", "text": "a"}], qrels)
    with pytest.raises(DatasetError, match=message) as raised:
        load_qrels(folder)
    assert str(folder / "qrels" / "test.tsv") in str(raised.value)


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    folder = _write_set(tmp_path, [{"_id": "q1", "text": "a"}], HEADER)
    (folder / "qrels" / "test.tsv").write_bytes(HEADER.encode() + b"q1\td1\t1\nq2\td\xe9\t1\n")
    with pytest.raises(DatasetError, match=r"test\.tsv:3: not UTF-8 text"):
        load_qrels(folder)


def test_no_judged_query_is_an_error(tmp_path: Path) -> None:
    folder = _write_set(tmp_path, [{"_id": "q1", "text": "a"}], HEADER + "q1\td1\t0\nq9\td1\t1\n")
    with pytest.raises(DatasetError, match="no query has a positive judgement"):
        load_queries(folder)


def test_demo_set_is_consistent() -> None:
    queries = load_queries(DEMO_SET)
    qrels = load_qrels(DEMO_SET)
    assert len(queries) == 60
    assert len({q.id for q in queries}) == 60
    # The kind counts documented in evals/sets/demo/README.md.
    assert Counter(q.kind for q in queries) == {"identifier": 21, "paraphrase": 22, "general": 17}
    assert set(qrels) == {q.id for q in queries}
    corpus = {str(path.relative_to(DEMO_CORPUS)) for path in DEMO_CORPUS.rglob("*") if path.is_file()}
    for query_id, judged in qrels.items():
        assert set(judged) <= corpus, f"{query_id} judges files missing from {DEMO_CORPUS}"
        assert set(judged.values()) <= {1, 2}
        assert 2 in judged.values(), f"{query_id} has no answering (score 2) document"

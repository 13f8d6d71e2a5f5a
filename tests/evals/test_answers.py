"""The answer eval's scoring and its calibration fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evals.answers import (
    contains,
    exact_match,
    fit_signals,
    load_answer_set,
    load_squad,
    normalize,
    squad_passages,
    token_f1,
)
from evals.beir import load_qrels, load_queries
from rag_server.answer.abstention import Calibration
from rag_server.answer.signals import FEATURES
from rag_server.errors import RagError


def test_squad_normalization_and_scores() -> None:
    assert normalize("The  Normans, in 1066!") == "normans in 1066"
    assert exact_match("the France.", ["France"]) == 1.0
    # "in 10th century" against "10th and 11th centuries": 1 common token, precision 1/3, recall 1/4.
    assert abs(token_f1("in the 10th century", ["10th and 11th centuries"]) - 2 / 7) < 1e-9
    assert contains("Rollo led them [1].", ["Rollo"]) and not contains("Rollowing", ["Rollo"])


def test_squad_file_becomes_documents_and_questions(tmp_path: Path) -> None:
    squad = {
        "version": "v2.0",
        "data": [
            {
                "title": "Normans",
                "paragraphs": [
                    {
                        "context": "The Normans gave their name to Normandy.",
                        "qas": [
                            {
                                "id": "a",
                                "question": "Who named Normandy?",
                                "answers": [{"text": "The Normans"}],
                            },
                            {"id": "b", "question": "Who named Paris?", "answers": [], "is_impossible": True},
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(squad))
    documents, questions = load_squad(path)
    assert documents == [
        {"_id": "squad-0-0", "title": "Normans", "text": "The Normans gave their name to Normandy."}
    ]
    assert [(q.id, q.answerable, q.cite) for q in questions] == [
        ("a", True, ("squad-0-0",)),
        ("b", False, ()),
    ]

    # As passage retrieval: the answerable question, judged against its own paragraph, loads as a BEIR set.
    folder = tmp_path / "passages"
    assert squad_passages(path, folder) == (1, 1)
    assert [q.text for q in load_queries(folder, "test")] == ["Who named Normandy?"]
    assert load_qrels(folder, "test") == {"a": {"squad-0-0": 1}}
    assert json.loads((folder / "corpus.jsonl").read_text()) == documents[0]
    with pytest.raises(RagError, match="not empty"):
        squad_passages(path, folder)


def test_the_project_answer_set_loads() -> None:
    questions = load_answer_set(
        Path(__file__).resolve().parents[2] / "evals" / "sets" / "demo" / "answers.jsonl"
    )
    kinds = {q.kind for q in questions}
    assert kinds == {"document", "analytical", "unanswerable"}
    assert all(q.answers for q in questions if q.answerable)


def test_calibration_separates_and_orders_its_operating_points(tmp_path: Path) -> None:
    """On signals where coverage separates the classes, the fitted model ranks answerable questions higher,
    and `cautious` (a guess costs twice) abstains at least as readily as `balanced`."""
    rng = np.random.default_rng(0)
    answerable = rng.random(400) < 0.4
    x = rng.normal(0.5, 0.1, size=(400, len(FEATURES)))
    x[:, FEATURES.index("sentence_coverage")] += np.where(answerable, 0.2, -0.2) + rng.normal(0, 0.15, 400)
    calibration = fit_signals(x, answerable.astype(int), 0.5, "synthetic")
    probabilities = np.array([calibration.answerable(dict(zip(FEATURES, row, strict=True))) for row in x])
    assert probabilities[answerable].mean() > probabilities[~answerable].mean() + 0.2
    assert calibration.thresholds["cautious"] >= calibration.thresholds["balanced"]
    calibration.save(tmp_path / "calibration.json")
    assert Calibration.load(tmp_path / "calibration.json") == calibration


def test_calibration_on_a_subset_of_the_signals_reads_only_those(tmp_path: Path) -> None:
    """A model fitted on named features keeps their names, and answers from a full signal dict."""
    rng = np.random.default_rng(1)
    answerable = rng.random(300) < 0.5
    chosen = ("best_score", "name_missing")
    x = np.column_stack([np.where(answerable, 0.8, 0.4) + rng.normal(0, 0.2, 300), rng.random(300)])
    calibration = fit_signals(x, answerable.astype(int), 0.5, "synthetic", chosen)
    assert calibration.features == chosen and len(calibration.coef) == 2
    calibration.save(tmp_path / "subset.json")
    loaded = Calibration.load(tmp_path / "subset.json")
    signals = dict.fromkeys(FEATURES, 0.0)
    assert loaded.answerable(signals | {"best_score": 0.9}) > loaded.answerable(signals | {"best_score": 0.3})

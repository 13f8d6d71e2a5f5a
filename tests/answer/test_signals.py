"""Answerability signals: the new features and the subset the packaged calibration reads."""

from __future__ import annotations

import numpy as np

from rag_server.answer.abstention import Calibration
from rag_server.answer.evidence import Evidence
from rag_server.answer.signals import CALIBRATED, FEATURES, Lexicon, Scored, features, sentences
from rag_server.retrieval.analyzer import Analyzer


def _lexicon() -> Lexicon:
    return Lexicon(Analyzer(), lambda term: 1.0, 1.0)


def _ranked(items: list[Evidence]) -> list[Scored]:
    found = sentences(items)
    return [Scored(s, 0.5, 0.5, 1.0 - i / 10) for i, s in enumerate(found)]


def test_names_missing_from_the_sentence_and_the_evidence_gap() -> None:
    items = [
        Evidence(
            1, "chunk", "a#0", "a", None, "Rollo led the Vikings. Normandy was granted in 911.", 0.9, "h"
        ),
        Evidence(2, "chunk", "b#0", "b", None, "The Franks ruled the land for long.", 0.6, "h"),
    ]
    values = features("When did Rollo receive Normandy?", _ranked(items), _lexicon())
    assert set(values) == set(FEATURES)
    # "Rollo" and "Normandy" are both in the passage, only "Rollo" in its best (first) sentence.
    assert values["name_missing"] == 0.0
    assert values["name_missing_sentence"] == 0.5
    assert values["evidence_gap"] == 0.9 - 0.6
    assert values["best_score"] == 1.0


def test_one_passage_has_no_gap() -> None:
    items = [Evidence(1, "chunk", "a#0", "a", None, "Rollo led the Vikings into Francia.", 0.9, "h")]
    assert features("Who led the Vikings?", _ranked(items), _lexicon())["evidence_gap"] == 0.0


def test_the_packaged_calibration_reads_the_calibrated_features() -> None:
    calibration = Calibration.load()
    assert calibration.features == CALIBRATED
    assert set(CALIBRATED) <= set(FEATURES)
    assert calibration.thresholds["cautious"] >= calibration.thresholds["balanced"]
    strong = dict.fromkeys(FEATURES, 0.0) | {"best_score": 1.0, "evidence_coverage": 1.0, "answer_type": 1.0}
    weak = dict.fromkeys(FEATURES, 0.0) | {"name_missing": 1.0, "name_missing_sentence": 1.0}
    assert calibration.answerable(strong) > calibration.answerable(weak)
    assert np.isfinite(calibration.answerable(dict.fromkeys(FEATURES, 0.0)))

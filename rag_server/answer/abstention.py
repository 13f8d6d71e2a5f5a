"""Calibrated abstention: answer only when the evidence is strong enough, and say why not otherwise.

The strength of the evidence is a logistic model over `signals.FEATURES`, fitted on an answer eval
(`rag-server eval answers --squad FILE --calibrate-out FILE`), with one threshold per operating point:
`cautious` counts a guess (an answer to a question the evidence does not answer) as GUESS_COST times worse
than an unneeded abstention (prefer abstaining over guessing), `balanced` counts both alike (the best
accuracy). Both classes weigh half in the
fit, so the thresholds hold for an even mix. The packaged `calibration.json` was fitted so on SQuAD 2.0
questions of other articles than those the eval reports on (docs/answers.md says how).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from rag_server.answer.evidence import Evidence
from rag_server.answer.signals import FEATURES, Lexicon, Scored
from rag_server.errors import ConfigError

# How much worse than an unneeded abstention `cautious` counts a guess.
GUESS_COST = 2.0
# What a model says when the context lacks the answer (the prompt asks for this exact phrase).
NOT_IN_CONTEXT = "NOT_IN_CONTEXT"


@dataclass(frozen=True)
class Calibration:
    """A fitted answerability model and the thresholds of each operating point."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    thresholds: dict[str, float]
    support_threshold: float
    fitted_on: str = ""
    questions: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)

    def answerable(self, values: dict[str, float]) -> float:
        """The probability that the evidence answers the question."""
        x = (np.array([values[f] for f in self.features]) - np.array(self.mean)) / np.array(self.scale)
        z = float(x @ np.array(self.coef) + self.intercept)
        return 1 / (1 + math.exp(-max(min(z, 50.0), -50.0)))

    def threshold(self, operating_point: str) -> float:
        return 0.0 if operating_point == "never" else self.thresholds[operating_point]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path | None = None) -> Calibration:
        """The calibration in `path`, or the packaged one."""
        try:
            text = path.read_text() if path else _packaged()
            data = json.loads(text)
            data["features"] = tuple(data["features"])
            for key in ("mean", "scale", "coef"):
                data[key] = tuple(data[key])
            calibration = cls(**data)
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise ConfigError(f"cannot read the answer calibration {path or 'packaged'}: {error}") from None
        if set(calibration.features) - set(FEATURES):
            raise ConfigError(f"the answer calibration {path} names unknown features")
        return calibration


@lru_cache(maxsize=1)
def _packaged() -> str:
    return (resources.files("rag_server.answer") / "calibration.json").read_text()


@dataclass(frozen=True)
class Assessment:
    """Whether to answer, how sure, and if not, why (in words for the user)."""

    abstain: bool
    answerable: float
    threshold: float
    reason: str | None
    features: dict[str, float]
    ranked: Sequence[Scored]

    def as_dict(self) -> dict[str, Any]:
        return {
            "answerable": round(self.answerable, 4),
            "threshold": round(self.threshold, 4),
            "features": {name: round(value, 4) for name, value in self.features.items()},
        }


def assess(
    question: str,
    evidence: Sequence[Evidence],
    ranked: Sequence[Scored],
    values: dict[str, float],
    lexicon: Lexicon,
    calibration: Calibration,
    operating_point: str,
) -> Assessment:
    """Decide before any model call, so that an abstention costs nothing."""
    threshold = calibration.threshold(operating_point)
    if not evidence:
        return Assessment(
            True, 0.0, threshold, f"no passage about {_topic(question, lexicon)} was found", values, ranked
        )
    table = next((item for item in evidence if item.kind == "table"), None)
    if table is not None and table.number == 1:
        if not table.rows or all(v is None for row in table.rows for v in row):
            if len(evidence) == 1:
                return Assessment(True, 0.0, threshold, "the query found no rows", values, ranked)
        else:
            # A query that ran and returned rows is the answer to an analytical question.
            return Assessment(False, 1.0, threshold, None, values, ranked)
    probability = calibration.answerable(values)
    if probability >= threshold:
        return Assessment(False, probability, threshold, None, values, ranked)
    return Assessment(True, probability, threshold, _weak(question, ranked, lexicon), values, ranked)


def _weak(question: str, ranked: Sequence[Scored], lexicon: Lexicon) -> str:
    """Why the best evidence is not enough, naming the question's terms it lacks."""
    best = ranked[0].sentence.evidence
    asked = lexicon.analyzer.terms(question)
    held = lexicon.terms(best.text)
    missing = [word for word, term in _words(question, lexicon) if term in set(asked) - held]
    name = f"[{best.number}] {best.title!r}" if best.title else f"[{best.number}]"
    if missing:
        return f"no passage answers this: the closest ({name}) does not mention {', '.join(repr(w) for w in missing[:3])}"
    return (
        f"no passage answers this: the closest ({name}) mentions the question's terms but does not answer it"
    )


def _topic(question: str, lexicon: Lexicon) -> str:
    words = [word for word, _ in _words(question, lexicon)]
    return ", ".join(repr(w) for w in words[:4]) or repr(question[:60])


def _words(question: str, lexicon: Lexicon) -> list[tuple[str, str]]:
    """The question's words that are terms (not stopwords), with their terms, in question order."""
    pairs = []
    for word in question.replace("?", " ").split():
        terms = lexicon.analyzer.terms(word)
        if terms:
            pairs.append((word.strip(".,;:!\"'()"), terms[0]))
    return pairs


def says_not_in_context(answer: str) -> bool:
    """The model's own "the context does not say" reply."""
    head = answer.strip().upper()
    return (
        head.startswith(NOT_IN_CONTEXT) or head.startswith("I DON'T KNOW") or head.startswith("I DO NOT KNOW")
    )

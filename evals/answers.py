"""The answer eval: ask every question of a set through the pipeline and score answers, abstentions and
citations; and fit the abstention calibration on such a run.

Two layouts: SQuAD 2.0 JSON (`load_squad`: the paragraphs become the documents of one domain, unanswerable
questions are marked `is_impossible`) and the project's own `answers.jsonl` (`load_answer_set`: a question,
its kind, the facts a right answer contains, and the documents it should cite, or `sql`).

Each question is answered once with abstention off, recording the calibrated signals; whether it would have
abstained at each operating point is then read from those signals, which is exactly what the server decides
(the abstention comes before, and does not change, the answer).
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from evals.metrics import percentile
from rag_server.answer.abstention import GUESS_COST, Calibration
from rag_server.answer.citations import MARKER
from rag_server.answer.evidence import Evidence
from rag_server.answer.signals import CALIBRATED, FEATURES, Lexicon, support
from rag_server.errors import RagError
from rag_server.pipeline import AskRequest, AskResponse, Pipeline
from rag_server.trace import RequestTrace


@dataclass(frozen=True)
class AnswerQuestion:
    id: str
    question: str
    # Any of these, normalized, in the answer makes it right; empty for an unanswerable question.
    answers: tuple[str, ...]
    kind: str
    # Documents a right answer cites (`sql` for a query result); empty = any that holds the answer.
    cite: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        return self.kind != "unanswerable"


@dataclass
class Outcome:
    question: AnswerQuestion
    response: AskResponse
    latency_ms: float

    @property
    def answer(self) -> str:
        return MARKER.sub("", self.response.answer)


@dataclass
class AnswerReport:
    outcomes: list[Outcome] = field(default_factory=list)


# --- data sets ---------------------------------------------------------------------------------------------


def load_squad(path: Path) -> tuple[list[dict[str, str]], list[AnswerQuestion]]:
    """SQuAD 2.0: the paragraphs as BEIR-style documents, and every question (in file order)."""
    try:
        data = json.loads(path.read_text())["data"]
    except (OSError, ValueError, KeyError) as error:
        raise RagError(f"{path}: not a SQuAD 2.0 file ({error})") from None
    documents, questions = [], []
    for a, article in enumerate(data):
        for p, paragraph in enumerate(article["paragraphs"]):
            doc_id = f"squad-{a}-{p}"
            documents.append(
                {"_id": doc_id, "title": article["title"].replace("_", " "), "text": paragraph["context"]}
            )
            for qa in paragraph["qas"]:
                impossible = qa.get("is_impossible", False)
                answers = () if impossible else tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
                kind = "unanswerable" if impossible else "document"
                questions.append(
                    AnswerQuestion(qa["id"], qa["question"], answers, kind, () if impossible else (doc_id,))
                )
    return documents, questions


def squad_passages(path: Path, folder: Path) -> tuple[int, int]:
    """SQuAD 2.0 as passage retrieval, a BEIR folder: the paragraphs (`corpus.jsonl`), the answerable questions
    (`queries.jsonl`) and each question's own paragraph as its one relevant document (`qrels/test.tsv`).
    Returns (documents, questions)."""
    documents, questions = load_squad(path)
    answerable = [q for q in questions if q.answerable]
    if folder.exists() and any(folder.iterdir()):
        raise RagError(f"{folder} is not empty")
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in documents))
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q.id, "text": q.question}) + "\n" for q in answerable)
    )
    judged = "".join(f"{q.id}\t{q.cite[0]}\t1\n" for q in answerable)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + judged)
    return len(documents), len(answerable)


def load_answer_set(path: Path) -> list[AnswerQuestion]:
    """The project's layout: one JSON object a line with id, question, kind, answers and cite."""
    questions = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            questions.append(
                AnswerQuestion(
                    str(item["id"]),
                    item["question"],
                    tuple(item.get("answers", ())),
                    item["kind"],
                    tuple(item.get("cite", ())),
                )
            )
        except (ValueError, KeyError) as error:
            raise RagError(f"{path}:{number}: {error}") from None
    return questions


# --- running -----------------------------------------------------------------------------------------------


def run_answer_eval(
    pipeline: Pipeline,
    questions: Sequence[AnswerQuestion],
    domain: str,
    progress: Callable[[int], None] | None = None,
) -> AnswerReport:
    """Ask every question (abstention off: signals are recorded and applied after)."""
    report = AnswerReport()
    if questions:  # the first question loads the models and builds the index: not a latency sample
        pipeline.ask(AskRequest(question=questions[0].question, domain=domain))
    for question in questions:
        trace = RequestTrace()
        response = pipeline.ask(AskRequest(question=question.question, domain=domain), trace)
        report.outcomes.append(Outcome(question, response, trace.timings_ms.get("total", 0.0)))
        if progress:
            progress(1)
    return report


# --- scoring -----------------------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """SQuAD's normalization: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(answer: str, golds: Iterable[str]) -> float:
    return float(any(normalize(answer) == normalize(gold) for gold in golds))


def token_f1(answer: str, golds: Iterable[str]) -> float:
    best = 0.0
    predicted = normalize(answer).split()
    for gold in golds:
        truth = normalize(gold).split()
        common = sum((Counter(predicted) & Counter(truth)).values())
        if common:
            precision, recall = common / len(predicted), common / len(truth)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def contains(text: str, golds: Iterable[str]) -> bool:
    normalized = f" {normalize(text)} "
    return any(f" {normalize(gold)} " in normalized for gold in golds if normalize(gold))


def abstains(outcome: Outcome, calibration: Calibration, operating_point: str) -> bool:
    """Whether the server would abstain at this operating point (its own abstentions included)."""
    response = outcome.response
    if response.abstained:
        return True
    if operating_point == "never" or response.answerable >= 1.0:
        return False
    return calibration.answerable(response.signals) < calibration.threshold(operating_point)


def score(report: AnswerReport, calibration: Calibration, operating_point: str) -> dict[str, Any]:
    """The eval's figures at one operating point."""
    outcomes = report.outcomes
    answerable = [o for o in outcomes if o.question.answerable]
    unanswerable = [o for o in outcomes if not o.question.answerable]
    abstained = [o for o in outcomes if abstains(o, calibration, operating_point)]
    answered_right = [o for o in answerable if not abstains(o, calibration, operating_point)]
    cited = [(o, c) for o in answered_right for c in o.response.citations]
    true_abstentions = sum(not o.question.answerable for o in abstained)
    tokens = [o.response.usage.prompt_tokens + o.response.usage.completion_tokens for o in outcomes]
    costs = [o.response.usage.cost_usd for o in outcomes]
    ttft = [o.response.timings_ms.get("ttft", 0.0) for o in outcomes]
    latency = [o.latency_ms for o in outcomes]
    n = len(answerable) or 1
    return {
        "operating_point": operating_point,
        "questions": len(outcomes),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "exact_match": _round(sum(exact_match(o.answer, o.question.answers) for o in answered_right) / n),
        "f1": _round(sum(token_f1(o.answer, o.question.answers) for o in answered_right) / n),
        "contains_answer": _round(sum(contains(o.answer, o.question.answers) for o in answered_right) / n),
        "answered": len(outcomes) - len(abstained),
        "abstention_precision": _round(true_abstentions / len(abstained)) if abstained else None,
        "abstention_recall": _round(true_abstentions / len(unanswerable)) if unanswerable else None,
        "false_abstentions": len(abstained) - true_abstentions,
        "citation_accuracy": _round(
            sum(_cites_right(o, c.number) for o, c in cited) / len(cited) if cited else 0.0
        ),
        "unsupported_citation_rate": _round(
            sum(not c.supported for _, c in cited) / len(cited) if cited else 0.0
        ),
        "tokens_per_question": _round(sum(tokens) / len(outcomes)) if outcomes else 0.0,
        "cost_per_question": round(sum(costs) / len(outcomes), 8) if outcomes else 0.0,
        "ttft_ms_p50": _round(percentile(ttft, 50)),
        "ttft_ms_p95": _round(percentile(ttft, 95)),
        "latency_ms_p50": _round(percentile(latency, 50)),
        "latency_ms_p95": _round(percentile(latency, 95)),
    }


def _cites_right(outcome: Outcome, number: int) -> bool:
    """The cited evidence holds a gold answer (and is one of the expected documents, when the set names any)."""
    item = next(e for e in outcome.response.evidence if e.number == number)
    expected = outcome.question.cite
    if expected == ("sql",):
        return item.kind == "table"
    if expected and not any(_same_document(item.document_id, name) for name in expected):
        return False
    return contains(item.text, outcome.question.answers) if outcome.question.answers else True


def _same_document(document_id: str | None, expected: str) -> bool:
    """Expected documents are named by id or by file name (a path's last part)."""
    return document_id is not None and (document_id == expected or document_id.endswith("/" + expected))


def _round(value: float) -> float:
    return round(value, 4)


# --- calibration -------------------------------------------------------------------------------------------


def fit_calibration(report: AnswerReport, lexicon: Lexicon, fitted_on: str) -> Calibration:
    """Fit the answerability model on a run and choose each operating point's threshold on it."""
    outcomes = [o for o in report.outcomes if not o.response.abstained and o.response.answerable < 1.0]
    x = np.array([[o.response.signals[f] for f in CALIBRATED] for o in outcomes])
    y = np.array([o.question.answerable for o in outcomes], dtype=int)
    return fit_signals(x, y, support_threshold(report, lexicon), fitted_on, CALIBRATED)


def fit_signals(
    x: np.ndarray,
    y: np.ndarray,
    support: float,
    fitted_on: str,
    features: tuple[str, ...] = FEATURES,
    regularization: float = 0.1,
) -> Calibration:
    """The logistic model over signal rows `x` (one column per name in `features`) with answerable labels
    `y`, and its thresholds. `regularization` is the inverse strength C (0.1: the signals are correlated and
    weak, and a milder fit held up better out of fold on the calibration questions).

    Both classes weigh half (fit and thresholds alike), so the thresholds hold for an even mix of answerable
    and unanswerable questions rather than for the calibration set's own mix."""
    from sklearn.linear_model import LogisticRegression

    if len(set(y.tolist())) < 2:
        raise RagError("calibration needs both answerable and unanswerable questions")
    weights = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=regularization, max_iter=1000).fit(
        (x - mean) / scale, y, sample_weight=weights
    )
    probabilities = model.predict_proba((x - mean) / scale)[:, 1]
    cautious, balanced = _thresholds(probabilities, y, weights)
    return Calibration(
        features,
        tuple(mean.round(6).tolist()),
        tuple(scale.round(6).tolist()),
        tuple(model.coef_[0].round(6).tolist()),
        round(float(model.intercept_[0]), 6),
        {"cautious": cautious, "balanced": balanced},
        support,
        fitted_on,
        len(y),
        {"date": date.today().isoformat(), "answerable_share": round(float(y.mean()), 4)},
    )


def _thresholds(
    probabilities: np.ndarray, answerable: np.ndarray, weights: np.ndarray
) -> tuple[float, float]:
    """The threshold of each operating point: the least (weighted) cost, where an unneeded abstention costs 1
    and answering an unanswerable question costs GUESS_COST (`cautious`) or 1 (`balanced`: the accuracy)."""
    unanswerable = answerable == 0
    best: dict[str, tuple[float, float]] = {}
    for t in np.unique(np.round(probabilities, 4)):
        answered = probabilities >= t
        guessed = float(weights[answered & unanswerable].sum())
        withheld = float(weights[~answered & ~unanswerable].sum())
        for point, guess_cost in (("cautious", GUESS_COST), ("balanced", 1.0)):
            cost = guess_cost * guessed + withheld
            if point not in best or cost < best[point][0]:
                best[point] = (cost, float(t))
    return best["cautious"][1], best["balanced"][1]


def support_threshold(report: AnswerReport, lexicon: Lexicon) -> float:
    """The support score that best separates evidence holding a gold fact from evidence that does not.

    Claim = the question with its gold answer (what a right answer sentence says); positives = the
    retrieved evidence that holds the answer, negatives = the retrieved evidence that does not."""
    positives, negatives = [], []
    for outcome in report.outcomes:
        question = outcome.question
        if not question.answers:
            continue
        claim = f"{question.question} {question.answers[0]}"
        for item in outcome.response.evidence:
            if item.kind != "chunk":
                continue
            held = contains(item.text, question.answers)
            (positives if held else negatives).append(support(claim, _evidence(item), lexicon))
    if not positives or not negatives:
        return 0.5
    best, threshold = -1.0, 0.5
    for t in sorted(set(positives + negatives)):
        true_positive = sum(p >= t for p in positives)
        false_positive = sum(n >= t for n in negatives)
        precision = (
            true_positive / (true_positive + false_positive) if true_positive + false_positive else 0.0
        )
        recall = true_positive / len(positives)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if f1 > best:
            best, threshold = f1, t
    return round(float(threshold), 4)


def _evidence(item: Any) -> Evidence:
    return Evidence(
        item.number, item.kind, item.ref, item.document_id, item.title, item.text, item.score, item.route
    )

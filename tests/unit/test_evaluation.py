from index.answer import Answer, Citation
from index.evaluation import EvalItem, score


def cite(url: str) -> Citation:
    return Citation(n=1, article_id=url, url=url, title="", outlet="", published="", quote="")


def test_metrics() -> None:
    items = [
        EvalItem("1", "q1", True, sources=("u1",), facts=(("Zug",), ("SMS", "text"))),
        EvalItem("2", "q2", True, sources=("u1",), facts=(("Wyden",),)),
        EvalItem("3", "q3", False),
        EvalItem("4", "q4", False),
    ]
    answers = {
        "q1": Answer("Mitto sitzt in Zug [1]", False, "de", (cite("u1"), cite("u2"))),
        "q2": Answer("weiss nicht", True, "de"),
        "q3": Answer("refused", True, "en"),
        "q4": Answer("guess [1]", False, "en", (cite("u1"),)),
    }
    report = score(items, lambda item: answers[item.question])
    assert report.source_hit_rate == 0.5
    assert report.citation_precision == 1 / 3
    assert report.fact_recall == 1 / 3
    assert report.correct_refusals == 0.5
    assert report.false_refusals == 0.5

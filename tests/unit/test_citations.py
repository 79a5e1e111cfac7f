from index.answer import Answer, Citation, sources_block
from index.prompts import PromptLibrary


def test_sources_block_lists_each_cited_article_once_in_order() -> None:
    citations = (
        Citation(1, "a", "https://a", "Titel A", "heise online", "2022-02", "q"),
        Citation(2, "b", "https://b", "Titel B", "Netzwoche", "", "q"),
    )
    block = sources_block(citations, "de", PromptLibrary())
    assert block.splitlines() == [
        "Quellen:",
        "[1] Titel A — heise online, 2022-02 — https://a",
        "[2] Titel B — Netzwoche — https://b",
    ]
    assert sources_block((), "en", PromptLibrary()) == ""


def test_answer_json_shape() -> None:
    answer = Answer("x [1]", False, "en", (Citation(1, "a", "https://a", "T", "O", "2022", "quote"),))
    data = answer.as_dict()
    assert set(data) >= {"answer", "refused", "language", "citations"}
    assert data["citations"] == [{"n": 1, "url": "https://a", "title": "T", "outlet": "O", "published": "2022",
                                  "quote": "quote", "article_id": "a"}]

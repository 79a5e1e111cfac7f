"""casebot is not tied to the demo: an English case, asked in English and German."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import Services, build_services
from tests.conftest import make_settings

ENGLISH_CASE = Path(__file__).resolve().parent / "data" / "english"
LEDGER = "https://ledger.example/2024/03/bridge-contract"
TIMES = "https://harbourtimes.example/news/calloway-search"


@pytest.fixture(scope="module")
def english_case(tmp_path_factory: pytest.TempPathFactory) -> Services:
    services = build_services(make_settings(tmp_path_factory.mktemp("english"), ENGLISH_CASE,
                                            default_language="en"))
    assert services.case.index().added == 2
    return services


@pytest.mark.parametrize(
    ("question", "fact", "source", "language"),
    [
        ("How much is the bridge repair contract worth?", "48 million", LEDGER, "en"),
        ("Who is the chief executive of Calloway?", "Margaret Olsen", TIMES, "en"),
        ("Warum wurde die Brücke für Lastwagen gesperrt?", "corrosion", LEDGER, "de"),
        ("Wer hat gegen die Vergabe gestimmt?", "Nandakumar", LEDGER, "de"),
    ],
)
def test_english_articles_answer_in_both_languages(english_case: Services, question: str, fact: str,
                                                   source: str, language: str) -> None:
    answer = english_case.case.ask(question)
    assert not answer.refused, answer
    assert fact in answer.text and answer.language == language
    assert source in {c.url for c in answer.citations}


# "Wann wurde Calloway gegründet?" used to be refused by an answer-type rule (no year in the
# best sentence); answer types no longer refuse, and a cross-language question's missing
# focus cannot be seen in its words. It stays in tests/data/english.jsonl as a known miss.
@pytest.mark.parametrize("question", ["What is the capital of France?", "Who won the Champions League?",
                                      "Wer hat die Fußball-WM 2014 gewonnen?"])
def test_english_case_refuses_what_it_does_not_know(english_case: Services, question: str) -> None:
    answer = english_case.case.ask(question)
    assert answer.refused and not answer.citations

"""The per-sentence support check: its pure rules in tables, and verdicts with the real default embedder."""

from __future__ import annotations

import pytest

from index.embeddings import EmbeddingSpec, build_embedding
from index.support import SupportChecker, names, negated, numbers

PASSAGE = (
    "Gemäss Bloomberg sollen einige Kunden darüber informiert worden sein, dass Gorelik nicht mehr für das "
    "Unternehmen arbeite. Der Mikroblogging-Dienst habe diese Absicht dem U.S. Senator Ron Wyden "
    "(Demokrat, Oregon) mitgeteilt. Mitto wurde 2013 gegründet und beschäftigt 1.000 Mitarbeitende."
)
OTHER = ("Der EDÖB hat die Mitto AG ins Visier genommen. Twitter will für den Versand von "
         "Verifikations-PINs zu anderen Dienstleistern wechseln.")


@pytest.mark.parametrize(("text", "expected"), [
    ("Gorelik arbeitet nicht mehr für Mitto.", True),
    ("Gorelik arbeitet noch für Mitto.", False),
    ("Gorelik no longer works for Mitto.", True),
    ("Gorelik still works for Mitto.", False),
    ("Mitto hat keine Verbindungen nach Russland.", True),
    ("Twitter doesn't comment.", True),
    ("Twitter did not comment.", True),
    ("Nicht nur Twitter trennt sich von Mitto.", False),  # "nicht nur" negates nothing
    ("Not only Twitter is dropping Mitto.", False),
    ("Das Unternehmen äusserte sich nie dazu.", True),
    ("Notably, Mitto is based in Zug.", False),  # "not" inside a word is no negation
])
def test_negation_cues(text: str, expected: bool) -> None:
    assert negated(text) is expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Mitto wurde 2013 gegründet.", {"2013"}),
    ("1.000 Mitarbeitende, 1,000 employees, 10'000 SMS", {"1000", "10000"}),
    ("SS7 und Afghanistan", {"7"}),
    ("keine Zahl", set()),
])
def test_numbers(text: str, expected: set[str]) -> None:
    assert numbers(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Twitter informed senator Ron Wyden.", {"ron", "wyden"}),  # the first word is not counted
    ("Der EDÖB prüft die Mitto AG.", {"edöb", "mitto", "ag"}),
])
def test_names(text: str, expected: set[str]) -> None:
    assert names(text) == expected


@pytest.fixture(scope="module")
def checker() -> SupportChecker:
    return SupportChecker(build_embedding(EmbeddingSpec()))


@pytest.mark.parametrize(("sentence", "passages", "supported", "reason"), [
    # paraphrases and translations of the passage are supported
    ("Einige Kunden wurden informiert, dass Gorelik nicht mehr für das Unternehmen arbeitet.", [PASSAGE], True, "ok"),
    ("Customers were told that Gorelik no longer works for the company.", [PASSAGE], True, "ok"),
    ("Twitter teilte seine Absicht dem US-Senator Ron Wyden mit.", [PASSAGE], True, "ok"),
    # the dropped "nicht mehr" (the example) and an added negation fail
    ("Ja, Gorelik arbeitet noch für Mitto.", [PASSAGE], False, "negation"),
    ("Gorelik still works for the company.", [PASSAGE], False, "negation"),
    ("Ron Wyden wurde nicht informiert.", [PASSAGE], False, "negation"),
    # a number the passage does not contain
    ("Mitto wurde 2015 gegründet.", [PASSAGE], False, "number"),
    ("Mitto beschäftigt 5.000 Mitarbeitende.", [PASSAGE], False, "number"),
    # a true sentence cited to the wrong passage shares words but not meaning
    ("Der EDÖB hat Mitto ins Visier genommen.", [PASSAGE], False, "meaning"),
    ("Twitter wechselt für Verifikations-PINs zu anderen Dienstleistern.", [PASSAGE], False, "meaning"),
    ("Der EDÖB hat Mitto ins Visier genommen.", [OTHER], True, "ok"),
])
def test_support_verdicts(
    checker: SupportChecker, sentence: str, passages: list[str], supported: bool, reason: str
) -> None:
    verdict = checker.check(sentence, passages)
    assert (verdict.supported, verdict.reason) == (supported, reason), verdict


def test_the_closest_passage_sentence_is_reported(checker: SupportChecker) -> None:
    verdict = checker.check("Gorelik arbeitet noch für Mitto.", [PASSAGE])
    assert "nicht mehr" in verdict.closest


def test_no_passage_supports_nothing(checker: SupportChecker) -> None:
    assert not checker.check("Mitto sitzt in Zug.", []).supported

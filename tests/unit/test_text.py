import pytest

from index.text import (
    detect_language,
    normalize_text,
    query_stems,
    split_sentences,
    stems,
    supports,
    word_stems,
    words,
)


def test_normalize_removes_invisible_and_control_characters_and_composes() -> None:
    raw = "Be\u200bho\u0308rde\u00ad\x07 sagt:\r\n\tSS7\ufeff"
    assert normalize_text(raw) == "Behörde sagt:\nSS7"


def test_sentences_stay_whole_around_abbreviations_and_ordinals() -> None:
    text = ("Der Dienst habe dies dem U.S. Senator Ron Wyden mitgeteilt, z.B. am 10. Februar. "
            "Mitto verschickt SMS bzw. Nachrichten. Dr. Meier sagt nichts!")
    assert split_sentences(text) == [
        "Der Dienst habe dies dem U.S. Senator Ron Wyden mitgeteilt, z.B. am 10. Februar.",
        "Mitto verschickt SMS bzw. Nachrichten.",
        "Dr. Meier sagt nichts!",
    ]


def test_citations_and_figure_references_do_not_end_a_sentence() -> None:
    text = ("Sie wurde von Jones et al. 1998 und Briffa 2000 bestätigt, siehe Abb. 2 und Vol. 3 der Reihe. "
            "Das Diagramm zeigt es.")
    assert split_sentences(text) == [
        "Sie wurde von Jones et al. 1998 und Briffa 2000 bestätigt, siehe Abb. 2 und Vol. 3 der Reihe.",
        "Das Diagramm zeigt es.",
    ]


def test_language_detection() -> None:
    assert detect_language("Welche Behörde hat Mitto ins Visier genommen?") == "de"
    assert detect_language("Which US senator did Twitter inform?") == "en"
    assert detect_language("Mitto", default="en") == "en"


def test_compounds_yield_their_parts() -> None:
    assert words("US-Senator") == ["us-senator", "us", "senator"]


def test_question_stems_cover_both_languages() -> None:
    german_passage = set(stems("Die Behörden ermitteln gegen Mitto.", "de"))
    assert set(query_stems("Welche Behörde ermittelt?")) & german_passage >= {"behord"}
    assert "investig" in query_stems("Who investigates?")


@pytest.mark.parametrize(
    ("word", "text", "language", "expected"),
    [
        ("gegründet", "Mitgründer Ilja Gorelik", "de", True),  # participle without ge-, compound head
        ("gegründet", "Die Firma gründete er 2012.", "de", True),
        ("umsatz", "Der Jahresumsatz stieg.", "de", True),  # the word asked about ends a compound
        ("verwaltungsrat", "Verwaltungsrat und Geschäftsleitung", "de", True),
        ("rat", "Der Verwaltungsrat tagte.", "de", False),  # too short to count as a head
        ("umsatz", "Der Gewinn stieg.", "de", False),
        ("found", "a profound change", "en", False),  # English writes compounds apart: exact stems only
        ("founded", "The firm was founded in 2012.", "en", True),
    ],
)
def test_a_word_is_supported_by_its_stems_or_as_a_compounds_head(
        word: str, text: str, language: str, expected: bool) -> None:
    assert supports(word_stems(word), set(stems(text, language)), language) is expected

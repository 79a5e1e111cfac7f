import itertools

from index.articles import Article
from index.chunking import chunk_article, chunk_id, chunk_sentences, is_furniture


def article(text: str) -> Article:
    return Article(article_id="https://example.org/x", title="T", text=text, path="x.md", outlet="O",
                   url="https://example.org/x", published="2022-02-10", language="de")


def test_chunks_keep_sentences_whole_and_overlap_by_one_sentence() -> None:
    sentences = [f"Satz Nummer {i} erzählt etwas über Mitto und Twitter." for i in range(12)]
    chunks = chunk_article(article(" ".join(sentences)), max_chars=160, overlap=1)
    assert len(chunks) > 3
    for chunk in chunks:
        assert all(s in sentences for s in chunk_sentences(chunk.text))
    for before, after in itertools.pairwise(chunks):
        assert chunk_sentences(before.text)[-1] == chunk_sentences(after.text)[0]
    covered = {s for c in chunks for s in chunk_sentences(c.text)}
    assert covered == set(sentences)


def test_chunk_ids_are_deterministic_and_carry_metadata() -> None:
    a = chunk_article(article("Erster Satz ist hier. Zweiter Satz ist da."))
    b = chunk_article(article("Erster Satz ist hier. Zweiter Satz ist da."))
    assert [c.chunk_id for c in a] == [c.chunk_id for c in b] == [chunk_id("https://example.org/x", 0)]
    meta = a[0].metadata
    assert meta["url"] == "https://example.org/x" and meta["position"] == 0 and meta["outlet"] == "O"


def test_furniture_is_dropped() -> None:
    assert is_furniture("(Bild: iHaMoo/Shutterstock.com)")
    assert is_furniture("Lesezeit: 2 Min.")
    assert is_furniture("In Pocket speichern vorlesen Druckansicht 13 Kommentare lesen")
    assert not is_furniture("Twitter hat sich dazu entschieden, die Zusammenarbeit zu beenden.")

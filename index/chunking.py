"""Articles to overlapping chunks of whole sentences.

Chunks are small (a few sentences) because the extractive answerer quotes
from them: a chunk whose vector is close to the question is close at the
level of the sentences a reader will see. Each chunk carries its article's
attribution and its position, and its id is a pure function of the
article's identity and that position, so re-running an interrupted index
overwrites instead of duplicating.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from index.articles import Article
from index.text import split_sentences

# A sentence longer than this is cut at word boundaries: text without
# punctuation (a table dump, say) must not become one giant chunk.
MAX_SENTENCE_CHARS = 1200
_TERMINAL = re.compile(r"""[.!?…:;"“”»«')]\s*$""")


@dataclass(frozen=True)
class Chunk:
    """A passage of one article, with everything needed to cite it."""

    chunk_id: str
    article: Article
    position: int
    text: str
    count: int = 0  # chunks of the article: lets the store tell a complete article from a torn one

    @property
    def metadata(self) -> dict[str, str | int]:
        """Flat metadata stored with the vector (Chroma accepts scalars only)."""
        a = self.article
        return {
            "article_id": a.article_id,
            "title": a.title,
            "outlet": a.outlet,
            "url": a.url,
            "published": a.published,
            "authors": ", ".join(a.authors),
            "language": a.language,
            "path": a.path,
            "content_hash": a.content_hash,
            "position": self.position,
            "chunks": self.count,
        }


def article_key(article_id: str) -> str:
    """Stable short key of an article id (used as the chunk id prefix)."""
    return hashlib.sha256(article_id.encode("utf-8")).hexdigest()[:20]


def chunk_id(article_id: str, position: int) -> str:
    """Deterministic id of the chunk at ``position`` of an article."""
    return key_chunk_id(article_key(article_id), position)


def key_chunk_id(key: str, position: int) -> str:
    """The chunk id for an article key and a position (see :func:`article_key`)."""
    return f"{key}-{position:05d}"


def is_furniture(paragraph: str) -> bool:
    """True for page furniture: bylines, credits, widgets, reading times.

    Real prose has several words and ends like a sentence; credits such as
    "(Bild: …)" and one-line labels do not. Headlines are dropped too: the
    title travels with every chunk as metadata.
    """
    n_words = len(paragraph.split())
    if n_words < 4:
        return True
    if paragraph.startswith("(") and paragraph.endswith(")") and n_words < 15:
        return True
    return not _TERMINAL.search(paragraph) and n_words < 15


def _cut_long(sentence: str) -> list[str]:
    """Cut a sentence over ``MAX_SENTENCE_CHARS`` at word boundaries.

    A "word" longer than the limit (a megabyte without a space) is cut
    inside, so that no chunk grows past the limit and the work stays linear.
    """
    if len(sentence) <= MAX_SENTENCE_CHARS:
        return [sentence]
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for word in sentence.split():
        pieces = [word[i:i + MAX_SENTENCE_CHARS] for i in range(0, len(word), MAX_SENTENCE_CHARS)]
        for piece in pieces:
            if current and size + len(piece) + 1 > MAX_SENTENCE_CHARS:
                parts.append(" ".join(current))
                current, size = [], 0
            current.append(piece)
            size += len(piece) + 1
    if current:
        parts.append(" ".join(current))
    return parts


def article_sentences(article: Article) -> list[list[str]]:
    """The article's prose as paragraphs of sentences, furniture removed."""
    return [
        [part for sentence in split_sentences(p) for part in _cut_long(sentence)]
        for p in article.paragraphs
        if not is_furniture(p)
    ]


def chunk_article(article: Article, max_chars: int = 480, overlap: int = 1) -> list[Chunk]:
    """Split an article into chunks of whole sentences.

    Sentences are packed greedily up to ``max_chars``; each new chunk starts
    with the last ``overlap`` sentences of the previous one, so a fact split
    across a boundary is still found whole. Paragraph breaks inside a chunk
    are kept as newlines.
    """
    units: list[tuple[str, bool]] = []  # (sentence, starts a paragraph)
    for paragraph in article_sentences(article):
        units.extend((s, i == 0) for i, s in enumerate(paragraph))

    chunks: list[list[tuple[str, bool]]] = []
    current: list[tuple[str, bool]] = []
    size = 0
    fresh = 0  # sentences in ``current`` that are not overlap
    for unit in units:
        length = len(unit[0]) + 1
        if current and fresh and size + length > max_chars:
            chunks.append(current)
            keep = current[-overlap:] if overlap and len(current) > overlap else []
            current, size, fresh = list(keep), sum(len(s) + 1 for s, _ in keep), 0
        current.append(unit)
        size += length
        fresh += 1
    if current and fresh:
        chunks.append(current)

    result = []
    for position, group in enumerate(chunks):
        text = ""
        for i, (sentence, starts_paragraph) in enumerate(group):
            text += sentence if i == 0 else ("\n" if starts_paragraph else " ") + sentence
        result.append(Chunk(chunk_id(article.article_id, position), article, position, text, len(chunks)))
    return result


def chunk_sentences(text: str) -> list[str]:
    """Sentences of a stored chunk's text (inverse of the joining above)."""
    return [s for line in text.split("\n") for s in split_sentences(line)]


def sentence_texts(text: str) -> list[str]:
    """A stored chunk's sentences as the answerer quotes and embeds them: stripped, the empty ones left out.

    The indexer stores one vector per such text, so both sides must cut
    sentences the same way.
    """
    return [s for s in (t.strip() for t in chunk_sentences(text)) if s]

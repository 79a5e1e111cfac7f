"""Hybrid retrieval: BM25 over stemmed words plus dense vectors, fused by rank.

BM25 finds names, numbers and rare words exactly; the multilingual vectors
find paraphrases and the other language. Reciprocal rank fusion combines the
two lists without having to calibrate their scores against each other.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from index.embeddings import Embedder, embed_queries
from index.files import private_dir
from index.store import ChunkStore, StoredChunk
from index.text import COMPOUND_HEAD, COMPOUNDING, query_stems, stems

log = logging.getLogger(__name__)


@dataclass
class Passage:
    """A retrieved chunk with the evidence for it."""

    chunk: StoredChunk
    dense: float = 0.0  # cosine similarity to the question
    keyword: float = 0.0  # BM25 score (0 when BM25 did not find it)
    fused: float = 0.0  # reciprocal-rank-fusion score
    ranks: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Retrieval:
    """One question's retrieval: what was searched for, its vector and the passages found.

    ``language`` is the question's; ``keywords`` the keyword index the
    search used (its IDF weights tell rare words from the case's common ones).
    """

    query: str
    language: str
    vector: np.ndarray
    passages: list[Passage]
    keywords: KeywordIndex


_CACHE_FORMAT = "casebot-keywords-3"
_CHUNKS_FILE = "chunks.json"
_SCALAR = (str, int, float, bool)


def _write_keyword_cache(folder: Path, keywords: KeywordIndex) -> None:
    """Write ``keywords`` into the new folder ``folder``: chunks with their stems, and the BM25 arrays.

    The document frequencies and the compound heads are stored as well, so
    that loading does not split every chunk's stems again (a cold ask on a
    large case would pay for it).
    """
    rows = [
        {"id": c.chunk_id, "text": c.text, "metadata": c.metadata, "stems": stem_text}
        for c, stem_text in zip(keywords.chunks, keywords.stem_texts())
    ]
    with (folder / _CHUNKS_FILE).open("w", encoding="utf-8") as file:
        json.dump({"format": _CACHE_FORMAT, "chunks": rows, "doc_freq": keywords.doc_freq,
                   "compound_heads": keywords.compound_heads}, file, ensure_ascii=False, separators=(",", ":"))
    if keywords.bm25 is not None:
        keywords.bm25.save(str(folder / "bm25"), show_progress=False)
    private_dir(folder, recursive=True)


def _read_cache_file(folder: Path) -> tuple[list[StoredChunk], list[str], dict[str, Any]]:
    """A cache folder's chunks, their stems (space-separated) and the rest of the file.

    Every field's type is checked (raises ValueError/TypeError/KeyError).
    """
    with (folder / _CHUNKS_FILE).open(encoding="utf-8") as file:
        data = json.load(file)
    if not isinstance(data, dict) or data.get("format") != _CACHE_FORMAT:
        raise ValueError("not a keyword index cache")
    chunks: list[StoredChunk] = []
    stem_texts: list[str] = []
    for row in data["chunks"]:
        chunk_id, text, metadata, tokens = row["id"], row["text"], row["metadata"], row["stems"]
        if not (type(chunk_id) is str and type(text) is str and type(metadata) is dict and type(tokens) is str
                and all(type(v) in _SCALAR for v in metadata.values())):
            raise TypeError("unexpected field types in the keyword index cache")
        chunks.append(StoredChunk(chunk_id, text, metadata))
        stem_texts.append(tokens)
    return chunks, stem_texts, data


def _read_chunks(folder: Path) -> tuple[list[StoredChunk], list[list[str]]]:
    """A cache folder's chunks and stems (for reusing the stems of unchanged chunks)."""
    chunks, stem_texts, _ = _read_cache_file(folder)
    return chunks, [tokens.split() for tokens in stem_texts]


def _read_keyword_cache(folder: Path) -> KeywordIndex:
    """Load a cache folder; its BM25 arrays are read with numpy, without pickle."""
    chunks, stem_texts, data = _read_cache_file(folder)
    doc_freq, heads = data["doc_freq"], data["compound_heads"]
    if not (type(doc_freq) is dict and all(type(v) is int for v in doc_freq.values())
            and type(heads) is list and all(type(h) is str for h in heads)):
        raise TypeError("unexpected document frequencies in the keyword index cache")
    bm25 = None
    if chunks:
        bm25 = bm25s.BM25.load(str(folder / "bm25"), allow_pickle=False)
        if bm25.scores.get("num_docs") != len(chunks):
            raise ValueError("the BM25 arrays do not match the chunks")
    return KeywordIndex.from_cache(chunks, stem_texts, bm25, doc_freq, heads)


def reciprocal_rank_fusion(rankings: dict[str, Sequence[str]], k: int = 60,
                           weights: dict[str, dict[str, float]] | None = None) -> list[tuple[str, float]]:
    """Fuse ranked id lists: score(id) = sum over lists of weight / (k + rank).

    Ranks start at 1. Ties keep the order of first appearance, so the result
    is deterministic. ``k`` damps the weight of the very top ranks (60 is the
    value from Cormack et al., 2009). ``weights[list][id]`` scales one id's
    vote in one list (default 1), e.g. a keyword hit that deserves less
    trust than the others.
    """
    scores: dict[str, float] = {}
    weights = weights or {}
    for name, ids in rankings.items():
        scale = weights.get(name, {})
        for rank, item in enumerate(ids, start=1):
            scores[item] = scores.get(item, 0.0) + scale.get(item, 1.0) / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


class KeywordIndex:
    """BM25 (bm25s) over the stemmed words of every stored chunk.

    Passages are stemmed in their article's language; questions in every
    language (see :func:`index.text.query_stems`).
    """

    def __init__(self, chunks: Iterable[StoredChunk], stemmed: Sequence[list[str]] | None = None,
                 bm25: bm25s.BM25 | None = None) -> None:
        """Index ``chunks``; ``stemmed`` (their stems) and ``bm25`` (their index, from the cache) save work."""
        self.chunks: list[StoredChunk] = []
        self._stemmed: list[list[str]] | None = []
        self._stem_texts: list[str] | None = None
        corpus: list[list[str]] = []
        doc_freq: dict[str, int] = {}
        compounding: set[str] = set()
        for i, chunk in enumerate(chunks):
            if stemmed is not None:
                tokens = stemmed[i]
            else:
                tokens = stems(chunk.text, str(chunk.metadata.get("language", "de")))
            self.chunks.append(chunk)
            self._stemmed.append(tokens)
            corpus.append(tokens or ["\u2400"])  # bm25s needs a token per document
            for token in set(tokens):
                doc_freq[token] = doc_freq.get(token, 0) + 1
            if str(chunk.metadata.get("language", "de")) in COMPOUNDING:
                compounding.update(tokens)
        self.doc_freq = doc_freq
        # Reversed stems of compounding languages, sorted: a word's stem is a compound's head if a
        # reversed stem starts with its reversal (see knows_word).
        self.compound_heads = sorted(stem[::-1] for stem in compounding)
        self.bm25 = bm25
        if corpus and bm25 is None:
            self.bm25 = bm25s.BM25()
            self.bm25.index(corpus, show_progress=False)

    @classmethod
    def from_cache(cls, chunks: list[StoredChunk], stem_texts: list[str], bm25: bm25s.BM25 | None,
                   doc_freq: dict[str, int], compound_heads: list[str]) -> KeywordIndex:
        """An index from its cache folder's parts: nothing is split or counted until needed."""
        index = cls.__new__(cls)
        index.chunks, index.bm25 = chunks, bm25
        index._stemmed, index._stem_texts = None, stem_texts
        index.doc_freq, index.compound_heads = doc_freq, compound_heads
        return index

    @property
    def stemmed(self) -> list[list[str]]:
        """Each chunk's stems."""
        if self._stemmed is None:
            assert self._stem_texts is not None
            self._stemmed = [tokens.split() for tokens in self._stem_texts]
        return self._stemmed

    def stem_texts(self) -> list[str]:
        """Each chunk's stems, space-separated (as cached)."""
        if self._stem_texts is None:
            return [" ".join(tokens) for tokens in self.stemmed]
        return self._stem_texts

    def __len__(self) -> int:
        return len(self.chunks)

    def idf(self, stem: str) -> float:
        """Smoothed inverse document frequency; unseen words get the maximum."""
        n = max(len(self.chunks), 1)
        df = self.doc_freq.get(stem, 0)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def knows_word(self, variants: set[str]) -> bool:
        """True if any chunk contains the word with these stems, alone or as a German compound's head.

        The same rule as :func:`index.text.supports`, over the whole corpus.
        """
        if any(stem in self.doc_freq for stem in variants):
            return True
        for head in variants:
            if len(head) < COMPOUND_HEAD:
                continue
            key = head[::-1]
            i = bisect.bisect_right(self.compound_heads, key)  # the first entry after the head itself
            if i < len(self.compound_heads) and self.compound_heads[i].startswith(key):
                return True
        return False

    def search(self, question_stems: list[str], top_k: int) -> list[tuple[StoredChunk, float]]:
        """The ``top_k`` best BM25 matches with a positive score."""
        if self.bm25 is None or not question_stems:
            return []
        scores = self.bm25.get_scores(question_stems)
        k = min(top_k, len(scores))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(self.chunks[i], float(scores[i])) for i in best if scores[i] > 0]


class HybridRetriever:
    """Dense + BM25 retrieval over a :class:`ChunkStore`, fused by RRF.

    The keyword index is built from the store on first use and rebuilt when
    the store's generation changes (another process re-indexed), checked at
    most every ``refresh_seconds``.
    """

    def __init__(
        self,
        store: ChunkStore,
        embedding: Embedder,
        dense_top_k: int = 20,
        keyword_top_k: int = 20,
        rrf_k: int = 60,
        refresh_seconds: float = 5.0,
        cache_dir: Path | None = None,
        cross_language_keyword_weight: float = 0.1,
    ) -> None:
        self._store = store
        self._cache_dir = cache_dir
        self._embedding = embedding
        self._dense_top_k = dense_top_k
        self._keyword_top_k = keyword_top_k
        self._rrf_k = rrf_k
        self._cross_keyword_weight = cross_language_keyword_weight
        self._refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._keywords: KeywordIndex | None = None
        self._generation = -1
        self._checked_at = 0.0

    def keyword_index(self) -> KeywordIndex:
        """The current keyword index, rebuilt if the store changed."""
        with self._lock:
            now = time.monotonic()
            if self._keywords is None or now - self._checked_at >= self._refresh_seconds:
                generation = self._store.generation()
                self._checked_at = now
                if self._keywords is None or generation != self._generation:
                    started = time.perf_counter()
                    self._keywords = self._load_or_build(generation)
                    self._generation = generation
                    log.info("keyword index: %d chunks in %.2fs (generation %d)",
                             len(self._keywords), time.perf_counter() - started, generation)
            return self._keywords

    def generation(self) -> int:
        """The store generation of the current keyword index (checked as :meth:`keyword_index` does)."""
        self.keyword_index()
        with self._lock:
            return self._generation

    def _load_or_build(self, generation: int) -> KeywordIndex:
        """The keyword index of this store generation, from the cache folder if possible.

        Reading every chunk back from Chroma and stemming it takes seconds on
        a large case, which a one-shot ``casebot ask`` would pay each time.
        The file name carries the collection's id (new after a rebuild) and
        its generation (bumped before and after every write), so a stale
        file is never used, and nothing is cached while a write is in
        progress. The folder holds JSON (chunks and their stems) and bm25s's
        own arrays (``.npy``, read with ``allow_pickle=False``), never a
        pickle: a file planted in the data dir must not be able to run code.
        """
        if self._cache_dir is None:
            return KeywordIndex(self._store.iter_chunks())
        prefix = f"keywords-{self._store.identity()}-"
        folder = self._cache_dir / f"{prefix}{generation}"
        if folder.is_dir():
            try:
                return _read_keyword_cache(folder)
            except Exception as error:  # any damaged or planted content (bm25s's own checks vary): rebuild
                log.warning("replacing an unreadable or outdated keyword index cache %s (%s)",
                            folder.name, type(error).__name__)
                shutil.rmtree(folder, ignore_errors=True)
        chunks = list(self._store.iter_chunks())
        keywords = KeywordIndex(chunks, self._reuse_stems(chunks, prefix, folder))
        if generation != self._store.generation() or self._store.writing():
            return keywords  # the store changed while reading: do not cache a mixed state
        try:
            private_dir(self._cache_dir)
            tmp = Path(tempfile.mkdtemp(prefix=".keywords-", dir=self._cache_dir))  # created 0700
            try:
                _write_keyword_cache(tmp, keywords)
                tmp.rename(folder)  # atomic; fails if another process cached this generation first
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
                if not folder.is_dir():
                    raise
            abandoned = time.time() - 3600  # the temporary folders of runs that were killed while writing
            # Other generations of this collection, files of the older formats (JSON, pickle) and
            # abandoned temporary folders; other collections sharing the data dir keep theirs.
            stale = [*self._cache_dir.glob(f"{prefix}*"), *self._cache_dir.glob("keywords-*.json"),
                     *self._cache_dir.glob("keywords-*.pickle"), *self._cache_dir.glob(".keywords-*")]
            for old in stale:
                try:
                    if old == folder or (old.name.startswith(".") and old.stat().st_mtime > abandoned):
                        continue
                    shutil.rmtree(old) if old.is_dir() else old.unlink()
                except FileNotFoundError:
                    pass  # another process renamed or removed it first
        except OSError as error:
            log.warning("could not cache the keyword index: %s", error)
        return keywords

    def _reuse_stems(self, chunks: list[StoredChunk], prefix: str, current: Path) -> list[list[str]]:
        """The chunks' stems, taken from an older generation's cache where the text and language are the same.

        After adding one article to a large case, stemming every chunk again
        would be most of the cost of rebuilding the keyword index.
        """
        known: dict[tuple[str, str], list[str]] = {}
        for folder in self._cache_dir.glob(f"{prefix}*") if self._cache_dir is not None else []:
            if folder != current and folder.is_dir():
                try:
                    old_chunks, old_stems = _read_chunks(folder)
                except (OSError, ValueError, TypeError, KeyError) as error:
                    log.info("not reusing the keyword cache %s (%s)", folder.name, type(error).__name__)
                    continue
                known.update(((c.text, str(c.metadata.get("language", "de"))), t)
                             for c, t in zip(old_chunks, old_stems))
        result = []
        for chunk in chunks:
            language = str(chunk.metadata.get("language", "de"))
            tokens = known.get((chunk.text, language))
            result.append(tokens if tokens is not None else stems(chunk.text, language))
        return result

    def invalidate(self) -> None:
        """Force a generation check on the next query (after a local re-index)."""
        with self._lock:
            self._checked_at = 0.0

    def embed_query(self, question: str) -> np.ndarray:
        """The question's vector (with the model's query convention)."""
        return np.asarray(self._embedding.get_query_embedding(question), dtype=np.float32)

    def embed_queries(self, questions: list[str]) -> np.ndarray:
        """Many questions' vectors in one batch (calibration at index time)."""
        return embed_queries(self._embedding, questions)

    def search(self, query: str, language: str, top_k: int = 8) -> Retrieval:
        """Embed ``query`` and retrieve its passages (see :meth:`retrieve`)."""
        vector = self.embed_query(query)
        passages = self.retrieve(query, top_k, vector, language)
        return Retrieval(query, language, vector, passages, self.keyword_index())

    def retrieve(self, question: str, top_k: int = 8, query_vector: np.ndarray | None = None,
                 language: str | None = None) -> list[Passage]:
        """The ``top_k`` best passages for ``question``, best first.

        ``query_vector`` saves embedding the question again when the caller
        already has it (see :meth:`embed_query`). ``language`` is the
        question's: a BM25 hit on a passage in another language matched only
        the words the two languages happen to share (names, numbers, false
        friends), so its vote in the fusion is weighted down and it cannot
        push the dense ranking, which does cross languages, out of the top.
        """
        keywords = self.keyword_index()
        if not len(keywords):
            return []
        if query_vector is None:
            query_vector = self.embed_query(question)
        dense_hits = self._store.query(query_vector.tolist(), self._dense_top_k)
        keyword_hits = keywords.search(query_stems(question), self._keyword_top_k)

        passages: dict[str, Passage] = {}
        for rank, (chunk, cosine) in enumerate(dense_hits, start=1):
            passages[chunk.chunk_id] = Passage(chunk, dense=cosine, ranks={"dense": rank})
        for rank, (chunk, score) in enumerate(keyword_hits, start=1):
            passage = passages.setdefault(chunk.chunk_id, Passage(chunk, dense=float("nan")))
            passage.keyword = score
            passage.ranks["keyword"] = rank

        cross_language = {}
        if language is not None:
            cross_language = {c.chunk_id: self._cross_keyword_weight for c, _ in keyword_hits
                              if str(c.metadata.get("language", language)) != language}
        fused = reciprocal_rank_fusion(
            {
                "dense": [c.chunk_id for c, _ in dense_hits],
                "keyword": [c.chunk_id for c, _ in keyword_hits],
            },
            k=self._rrf_k,
            weights={"keyword": cross_language},
        )
        result = []
        for chunk_id, score in fused[:top_k]:
            passage = passages[chunk_id]
            passage.fused = score
            result.append(passage)
        self._fill_dense(result, query_vector)
        return result

    def _fill_dense(self, passages: list[Passage], query_vector: np.ndarray) -> None:
        """Give keyword-only hits their cosine too (the answerer compares them)."""
        missing = [p for p in passages if math.isnan(p.dense)]
        if not missing:
            return
        vectors = self._store.embeddings([p.chunk.chunk_id for p in missing])
        for passage in missing:
            vector = vectors.get(passage.chunk.chunk_id)
            passage.dense = float(np.dot(vector, query_vector)) if vector is not None else 0.0

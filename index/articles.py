"""Article files in, :class:`Article` records out.

Supported: Markdown or text with YAML front-matter (``title``, ``outlet``,
``url``, ``published``, ``authors``, ``language``), plain ``.txt`` (the first
line is the title) and ``.html`` (main text and metadata extracted with
trafilatura, page furniture dropped). Every text is normalised and stripped of
hidden markup before it goes anywhere else: article text is untrusted input.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from index.errors import ArticleError
from index.markup import clean_html_tree, markdown_to_text, strip_hidden_markup
from index.text import detect_language, normalize_text

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
TEXT_SUFFIXES = frozenset({".txt"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
SUPPORTED_SUFFIXES = MARKDOWN_SUFFIXES | TEXT_SUFFIXES | HTML_SUFFIXES
MAX_ARTICLE_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class Article:
    """One published article, ready to be chunked.

    ``article_id`` is the article's identity across re-indexing: its URL, or
    its path when it has none. ``text`` holds paragraphs separated by blank
    lines. ``content_hash`` covers text and attribution, so a corrected title
    re-indexes the article too.
    """

    article_id: str
    title: str
    text: str
    path: str
    url: str = ""
    outlet: str = ""
    published: str = ""
    authors: tuple[str, ...] = ()
    language: str = "de"
    content_hash: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.content_hash:
            object.__setattr__(self, "content_hash", self._hash())

    def _hash(self) -> str:
        payload = json.dumps(
            [self.article_id, self.title, self.url, self.outlet, self.published,
             list(self.authors), self.language, self.text],
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    @property
    def paragraphs(self) -> list[str]:
        """Non-empty paragraphs of the body text."""
        return [p for p in self.text.split("\n\n") if p.strip()]


# --- text ----------------------------------------------------------------------

def _paragraphs(text: str) -> str:
    """Normalise and join paragraphs with one blank line between them."""
    text = normalize_text(text)
    paragraphs = [re.sub(r"\s*\n\s*", " ", p).strip() for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paragraphs if p)


# --- front-matter ---------------------------------------------------------------

MAX_FRONT_MATTER_CHARS = 64 * 1024


class _FrontMatterLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors and aliases.

    Aliases are how a 537-byte "billion laughs" file expands into gigabytes;
    article metadata never needs them, so any anchor or alias is refused
    before anything is expanded.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(
                None, None, "YAML anchors and aliases (&name, *name) are not allowed in front-matter",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def _front_matter_block(raw: str) -> tuple[str, str] | None:
    """``(yaml, body)`` when ``raw`` opens with a ``---`` line closed by another; else None.

    A plain scan for the closing line (linear), after line endings were
    normalised in :func:`_read`.
    """
    first_end = raw.find("\n")
    if not raw.startswith("---") or first_end == -1 or raw[3:first_end].strip():
        return None
    position = first_end
    while True:
        closing = raw.find("\n---", position)
        if closing == -1:
            return None
        line_end = raw.find("\n", closing + 1)
        line_end = len(raw) if line_end == -1 else line_end
        if not raw[closing + 4:line_end].strip():
            return raw[first_end + 1:closing], raw[line_end + 1:]
        position = closing + 1


def _split_front_matter(raw: str, path: Path) -> tuple[dict[str, Any], str]:
    split = _front_matter_block(raw)
    if split is None:
        return {}, raw
    block, body = split
    if len(block) > MAX_FRONT_MATTER_CHARS:
        raise ArticleError(path, f"front-matter is longer than {MAX_FRONT_MATTER_CHARS // 1024} KiB")
    try:
        meta = yaml.load(block, Loader=_FrontMatterLoader)  # noqa: S506 - a safe loader without aliases
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = getattr(mark, "line", None)
        where = f" (line {line + 2})" if isinstance(line, int) else ""
        problem = getattr(exc, "problem", None)
        if isinstance(problem, str) and "aliases" in problem:
            raise ArticleError(path, f"{problem}{where}") from exc
        raise ArticleError(path, f"broken front-matter{where}") from exc
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ArticleError(path, "front-matter is not a mapping of fields")
    return meta, body


def _meta_str(meta: dict[str, Any], key: str) -> str:
    value = meta.get(key)
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return normalize_text(strip_hidden_markup(str(value)))


def _meta_authors(meta: dict[str, Any]) -> tuple[str, ...]:
    value = meta.get("authors", meta.get("author"))
    if value is None:
        return ()
    items = value if isinstance(value, list) else re.split(r"\s*[,;]\s*", str(value))
    return tuple(a for a in (normalize_text(str(v)) for v in items) if a)


def _language(meta_language: str, text: str) -> str:
    code = meta_language.lower()[:2]
    return code if code in ("de", "en") else detect_language(text)


# --- loaders -----------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_ARTICLE_BYTES:
            raise ArticleError(path, f"file is too large ({size // 1024} KiB)")
        data = path.read_bytes()
    except OSError as exc:
        raise ArticleError(path, f"cannot read file ({exc.strerror or exc})") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ArticleError(path, "not UTF-8 text") from exc
    # Windows (CRLF) and old Mac (CR) line endings, and a BOM written twice.
    return text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")


def _article_id(url: str, path: Path, root: Path | None) -> str:
    """The URL, else ``file:`` and the path relative to ``root`` (absolute when outside it).

    ``root`` is the articles folder, whatever folder or file was named on
    the command line, so that one file always gets one id.
    """
    if url:
        return url
    resolved = path.resolve()
    if root is not None:
        try:
            return "file:" + resolved.relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return "file:" + resolved.as_posix()


def _from_text(path: Path, root: Path | None, raw: str, markdown: bool) -> Article:
    meta, body = _split_front_matter(raw, path)
    body = markdown_to_text(body) if markdown or meta else strip_hidden_markup(body)
    title = _meta_str(meta, "title")
    if not title:  # plain text: the first line is the title
        first, _, body = normalize_text(body).partition("\n")
        title = first.strip()
    text = _paragraphs(body)
    if text.startswith(title + "\n\n"):
        text = text[len(title) + 2:]  # the headline repeated as the first line
    if not text.strip():
        raise ArticleError(path, "no article text")
    url = _meta_str(meta, "url")
    return Article(
        article_id=_article_id(url, path, root),
        title=title[:300],
        text=text,
        path=str(path),
        url=url,
        outlet=_meta_str(meta, "outlet"),
        published=_meta_str(meta, "published") or _meta_str(meta, "date"),
        authors=_meta_authors(meta),
        language=_language(_meta_str(meta, "language"), text),
    )


def _from_html(path: Path, root: Path | None, raw: str) -> Article:
    import trafilatura  # heavy import; only HTML articles need it

    # Hidden elements go before trafilatura sees the page: its main-text heuristics
    # would keep a `<div hidden>` in the article body.
    doc = trafilatura.bare_extraction(
        clean_html_tree(raw), with_metadata=True, include_comments=False, include_tables=False,
        favor_precision=True, url=None,
    )
    if doc is None:
        raise ArticleError(path, "no article text found in the HTML page")
    data: dict[str, Any] = doc.as_dict() if hasattr(doc, "as_dict") else dict(doc)
    text = _paragraphs(str(data.get("text") or "").replace("\n", "\n\n"))
    if not text:
        raise ArticleError(path, "no article text found in the HTML page")
    url = normalize_text(str(data.get("url") or ""))
    author = str(data.get("author") or "")
    return Article(
        article_id=_article_id(url, path, root),
        title=normalize_text(str(data.get("title") or path.stem))[:300],
        text=text,
        path=str(path),
        url=url,
        outlet=normalize_text(str(data.get("sitename") or "")),
        published=normalize_text(str(data.get("date") or "")),
        authors=tuple(a.strip() for a in re.split(r"[;,]", author) if a.strip()),
        language=_language(str(data.get("language") or ""), text),
    )


def load_article(path: Path, root: Path | None = None) -> Article:
    """Parse one article file.

    Raises :class:`ArticleError` (with a reason a person can act on) for
    unsupported, unreadable or empty files; never anything else for bad
    content.
    """
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ArticleError(path, f"unsupported file type {suffix or '(none)'}; use .md, .txt or .html")
    raw = _read(path)
    if suffix in HTML_SUFFIXES:
        try:
            return _from_html(path, root, raw)
        except ArticleError:
            raise
        except Exception as exc:  # the extractor's failures are a file problem, not ours
            raise ArticleError(path, f"HTML could not be parsed ({type(exc).__name__})") from exc
    return _from_text(path, root, raw, markdown=suffix in MARKDOWN_SUFFIXES)


def find_article_files(paths: Sequence[Path]) -> Iterator[tuple[Path, Path | None]]:
    """Yield ``(file, base)`` once for every candidate file under ``paths``.

    Files are yielded resolved (so a file named twice, or through a
    symlink, is read once); ``base`` is the folder it was found in. Hidden
    files and folders are skipped; files with other suffixes are yielded
    too, so that the caller can report them as skipped.
    """
    seen: set[Path] = set()
    for base in paths:
        candidates = []
        if base.is_dir():
            for file in sorted(base.rglob("*")):
                rel = file.relative_to(base)
                if any(part.startswith(".") for part in rel.parts) or not file.is_file():
                    continue
                candidates.append((file, base))
        else:
            candidates.append((base, base.parent))
        for file, folder in candidates:
            resolved = file.resolve()
            if resolved not in seen:
                seen.add(resolved)
                yield resolved, folder.resolve()

"""A fake but protocol-faithful Telegram Bot API server for integration tests.

``BotApiPeer`` serves the Bot API over real HTTP on ``127.0.0.1`` so that an
unmodified python-telegram-bot (PTB) ``Application``/``Bot`` with its real
``HTTPXRequest`` can talk to it through ``base_url``/``base_file_url``::

    async with BotApiPeer() as peer:                    # same event loop
        app = (
            ApplicationBuilder()
            .token(peer.token)
            .base_url(peer.base_url)
            .base_file_url(peer.base_file_url)
            .build()
        )
        ...
        peer.private_text(42, "hello")
        call = await peer.wait_for_async("sendMessage")

    with BotApiPeer() as peer:                          # background thread
        ...                                             # e.g. bot in a subprocess
        peer.wait_for("sendMessage")

Wire contract (matching https://core.telegram.org/bots/api):

* Requests: ``GET``/``POST {host}/bot<TOKEN>/<method>`` with parameters in the
  query string, an ``application/json`` body, an
  ``application/x-www-form-urlencoded`` body or a ``multipart/form-data`` body.
  PTB sends form bodies (multipart when files are uploaded) in which every
  non-string value is JSON-encoded, e.g. ``chat_id=42``,
  ``reply_markup={"inline_keyboard": ...}``; the peer decodes such values by
  parameter name, like the real server does by declared type.  Method names are
  case-insensitive.
* Responses: ``{"ok": true, "result": ...}`` (plus ``description`` where the
  real server sends one) or ``{"ok": false, "error_code": N, "description": ...,
  "parameters"?: {...}}`` with HTTP status ``N``.
* A token other than ``peer.token`` gets 401 ``Unauthorized``; an unknown method
  or path gets 404 ``Not Found``.
* Files are downloaded from ``GET {host}/file/bot<TOKEN>/<file_path>``.

Everything the bot does is recorded in :attr:`BotApiPeer.calls`; failures can be
injected with :meth:`BotApiPeer.fail_next`.  State is guarded by one lock, so the
test-side API may be used from any thread, both while the server runs in the
test's event loop and while it runs in its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import itertools
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import web

if TYPE_CHECKING:
    from telegram.ext import ApplicationBuilder

JSON = dict[str, Any]
"""A decoded JSON object (Bot API objects, request parameters)."""

MethodHandler = Callable[[JSON], Any]
"""A custom method implementation: receives decoded params, returns ``result``."""

DEFAULT_TOKEN = "7000000001:" "AAHcasebotTestTokenForTheBotApiPeer0"  # fake; split so it is not mistaken for a real one
"""Token the peer accepts unless another one is configured."""

FILE_DOWNLOAD = "<file download>"
"""Pseudo method name for :meth:`BotApiPeer.fail_next` to break file downloads."""

GROUP_ANONYMOUS_BOT: JSON = {
    "id": 1087968824,
    "is_bot": True,
    "first_name": "Group",
    "username": "GroupAnonymousBot",
}
"""``from`` of messages sent by anonymous group administrators."""

CHANNEL_BOT: JSON = {
    "id": 136817688,
    "is_bot": True,
    "first_name": "Channel",
    "username": "Channel_Bot",
}
"""``from`` of messages sent to a group on behalf of a channel."""

TELEGRAM_SERVICE_USER: JSON = {"id": 777000, "is_bot": False, "first_name": "Telegram"}
"""``from`` of automatic forwards from a linked channel."""

MAX_MESSAGE_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024

# Update types delivered when allowed_updates is unset or [] (Bot API default).
_NOT_DEFAULT_UPDATE_TYPES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

_CONFLICT_OTHER_POLL = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)
_CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply "
    "markup are exactly the same as a current content and reply markup of the message"
)
_QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"

_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_COMMAND_SCOPES = frozenset(
    {
        "default",
        "all_private_chats",
        "all_group_chats",
        "all_chat_administrators",
        "chat",
        "chat_administrators",
        "chat_member",
    }
)
_BUTTON_ACTIONS = frozenset(
    {
        "url",
        "callback_data",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    }
)

# Parameters whose form-encoded value is a JSON document.
_JSON_PARAMS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "link_preview_options",
        "reply_parameters",
        "commands",
        "scope",
        "allowed_updates",
        "media",
        "results",
        "permissions",
        "menu_button",
        "rights",
        "reaction",
    }
)
_INT_PARAMS = frozenset(
    {
        "message_id",
        "offset",
        "limit",
        "timeout",
        "message_thread_id",
        "cache_time",
        "max_connections",
        "user_id",
        "reply_to_message_id",
        "until_date",
        "direct_messages_topic_id",
    }
)
_BOOL_PARAMS = frozenset(
    {
        "disable_web_page_preview",
        "disable_notification",
        "protect_content",
        "show_alert",
        "drop_pending_updates",
        "allow_sending_without_reply",
        "allow_paid_broadcast",
        "disable_content_type_detection",
        "revoke",
        "is_big",
        "for_channels",
    }
)
_CHAT_ID_PARAMS = frozenset({"chat_id", "from_chat_id"})
_JSON_PARAM_LABELS = {
    "reply_markup": "reply keyboard markup",
    "entities": "entities",
    "caption_entities": "entities",
    "link_preview_options": "link preview options",
    "reply_parameters": "reply parameters",
    "commands": "bot commands",
    "scope": "bot command scope",
}


# --------------------------------------------------------------------------------------
# Public value types
# --------------------------------------------------------------------------------------


class Call(NamedTuple):
    """One authorised API request as the peer decoded it.

    ``method`` is the canonical Bot API spelling (``"sendMessage"``) for known
    methods, else as requested.  ``params`` holds decoded values: ints for ids,
    bools, JSON objects/lists for JSON-typed parameters, :class:`UploadedFile`
    for multipart file parts, plain strings otherwise.
    """

    method: str
    params: JSON


@dataclasses.dataclass(frozen=True)
class UploadedFile:
    """A file part of a ``multipart/form-data`` request."""

    field: str
    filename: str | None
    content_type: str | None
    content: bytes


@dataclasses.dataclass(frozen=True)
class BotIdentity:
    """The bot account the peer impersonates (returned by ``getMe``)."""

    id: int = 7000000001
    username: str = "casebot_test_bot"
    first_name: str = "Casebot Test"
    can_join_groups: bool = True
    can_read_all_group_messages: bool = False
    supports_inline_queries: bool = False

    def as_user(self) -> JSON:
        """The bot as a Bot API ``User`` object (as in ``Message.from``)."""
        return {
            "id": self.id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }

    def get_me(self) -> JSON:
        """The ``getMe`` result, a ``User`` with the bot-only fields."""
        return {
            **self.as_user(),
            "can_join_groups": self.can_join_groups,
            "can_read_all_group_messages": self.can_read_all_group_messages,
            "supports_inline_queries": self.supports_inline_queries,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }


@dataclasses.dataclass(frozen=True)
class SentMessage:
    """A successful ``sendMessage`` as the bot requested it.

    ``text`` is the raw text as sent (HTML tags included); ``message`` is the
    ``Message`` object returned to the bot (tags parsed into ``entities``).
    ``params`` holds every decoded request parameter.
    """

    chat_id: int | str
    message_id: int
    text: str
    parse_mode: str | None
    reply_markup: JSON | None
    link_preview_options: JSON | None
    disable_web_page_preview: bool | None
    reply_parameters: JSON | None
    message_thread_id: int | None
    params: JSON
    message: JSON


@dataclasses.dataclass(frozen=True)
class RegisteredFile:
    """A file the bot can fetch with ``getFile`` and download."""

    file_id: str
    file_unique_id: str
    file_path: str
    content: bytes
    file_size: int
    file_name: str | None
    mime_type: str | None


@dataclasses.dataclass(frozen=True)
class WebhookConfig:
    """The webhook registered with ``setWebhook`` (``url == ""``: none)."""

    url: str = ""
    secret_token: str | None = None
    max_connections: int | None = None
    allowed_updates: list[str] | None = None
    ip_address: str | None = None
    drop_pending_updates: bool = False


class ApiError(Exception):
    """An error reply of the Bot API; raise it from custom method handlers."""

    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def body(self) -> JSON:
        """The JSON body the real server sends for this error."""
        body: JSON = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


class EntityParseError(ValueError):
    """Text could not be parsed with the requested ``parse_mode``.

    The message is Telegram's (without the ``Bad Request: can't parse entities:``
    prefix the API adds).
    """


# --------------------------------------------------------------------------------------
# Text helpers: Telegram HTML parsing and automatic entity detection
# --------------------------------------------------------------------------------------


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units, the unit of entity offsets."""
    return len(text.encode("utf-16-le")) // 2


_HTML_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
_SIMPLE_TAG_ENTITIES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "code": "code",
}
_SPACES = frozenset(b" \t\n\r\x0b\x0c")
_LT, _GT, _AMP, _SLASH, _EQ = (ord(c) for c in "<>&/=")


def _is_ascii_alpha(byte: int) -> bool:
    return 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A


def _is_ascii_alnum(byte: int) -> bool:
    return _is_ascii_alpha(byte) or 0x30 <= byte <= 0x39


def _decode_html_entity(data: bytes, pos: int) -> tuple[int, int] | None:
    """Decode the character reference at ``data[pos] == '&'`` like TDLib does.

    Returns ``(code point, position after the reference)`` or ``None`` if it is
    not a supported reference (then ``&`` is literal text).  Supported: ``&lt;``,
    ``&gt;``, ``&amp;``, ``&quot;`` and numeric references; ``;`` is optional.
    """
    end = pos + 1
    n = len(data)
    value = 0
    if end < n and data[end] == ord("#"):
        end += 1
        if end < n and data[end] == ord("x"):
            end += 1
            while end < n and chr(data[end]) in "0123456789abcdefABCDEF":
                value = value * 16 + int(chr(data[end]), 16)
                end += 1
        else:
            while end < n and 0x30 <= data[end] <= 0x39:
                value = value * 10 + data[end] - 0x30
                end += 1
        if value == 0 or value >= 0x10FFFF or end - pos >= 10:
            return None
    else:
        while end < n and _is_ascii_alpha(data[end]):
            end += 1
        named = {b"lt": 0x3C, b"gt": 0x3E, b"amp": 0x26, b"quot": 0x22}.get(data[pos + 1 : end])
        if named is None:
            return None
        value = named
    if 0xD800 <= value <= 0xDFFF:
        return None
    if end < n and data[end] == ord(";"):
        end += 1
    return value, end


def _decode_html_entities(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] == _AMP:
            decoded = _decode_html_entity(data, i)
            if decoded is not None:
                out += chr(decoded[0]).encode("utf-8")
                i = decoded[1]
                continue
        out.append(data[i])
        i += 1
    return bytes(out)


@dataclasses.dataclass
class _OpenTag:
    name: str
    argument: str
    offset: int  # UTF-16 offset in the output text


def parse_html(text: str) -> tuple[str, list[JSON]]:
    """Parse Telegram-flavoured HTML into plain text and ``MessageEntity`` dicts.

    Mirrors TDLib's ``parse_html``: only the tags in Telegram's whitelist are
    accepted (``b strong i em u ins s strike del span.tg-spoiler tg-spoiler a
    code pre blockquote tg-emoji``), tags must nest properly, ``<`` must start
    a tag and ``&lt; &gt; &amp; &quot;`` plus numeric references are decoded
    (unknown ``&name;`` stays literal).  Byte offsets in errors count UTF-8
    bytes of the input; entity offsets/lengths count UTF-16 code units.

    Raises:
        EntityParseError: with Telegram's wording, e.g.
            ``Unsupported start tag "br" at byte offset 5``.
    """
    data = text.encode("utf-8")
    n = len(data)
    out = bytearray()
    stack: list[_OpenTag] = []
    entities: list[JSON] = []

    def out_offset() -> int:
        return utf16_len(out.decode("utf-8"))

    def skip_spaces(pos: int) -> int:
        while pos < n and data[pos] in _SPACES:
            pos += 1
        return pos

    i = 0
    while i < n:
        byte = data[i]
        if byte == _AMP:
            decoded = _decode_html_entity(data, i)
            if decoded is not None:
                out += chr(decoded[0]).encode("utf-8")
                i = decoded[1]
                continue
        if byte != _LT:
            out.append(byte)
            i += 1
            continue

        begin = i
        i += 1
        if i < n and data[i] == _SLASH:
            # ---- end tag
            if not stack:
                raise EntityParseError(f"Unexpected end tag at byte offset {begin}")
            i += 1
            name_start = i
            while i < n and data[i] not in _SPACES and data[i] != _GT:
                i += 1
            end_name = data[name_start:i].decode("utf-8", "replace").lower()
            i = skip_spaces(i)
            if i >= n or data[i] != _GT:
                raise EntityParseError(f"Unclosed end tag at byte offset {begin}")
            i += 1
            tag = stack.pop()
            if end_name and end_name != tag.name:
                raise EntityParseError(
                    f'Unmatched end tag at byte offset {begin}, expected "</{tag.name}>", '
                    f'found "</{end_name}>"'
                )
            _close_html_tag(tag, out_offset(), entities)
            continue

        # ---- start tag
        name_start = i
        while i < n and data[i] not in _SPACES and data[i] != _GT:
            i += 1
        if i >= n:
            raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
        name = data[name_start:i].decode("utf-8", "replace").lower()
        if name not in _HTML_TAGS:
            raise EntityParseError(f'Unsupported start tag "{name}" at byte offset {begin}')
        argument = ""
        while True:
            i = skip_spaces(i)
            if i >= n:
                raise EntityParseError(f'Unclosed start tag "{name}" at byte offset {begin}')
            if data[i] == _GT:
                break
            attr_start = i
            while i < n and data[i] not in _SPACES and data[i] not in (_EQ, _GT):
                i += 1
            attr_name = data[attr_start:i].decode("utf-8", "replace").lower()
            if not attr_name:
                raise EntityParseError(f'Empty attribute name in the tag "{name}" at byte offset {begin}')
            i = skip_spaces(i)
            if i >= n:
                raise EntityParseError(f'Unclosed start tag "{name}" at byte offset {begin}')
            if data[i] != _EQ:
                if name == "blockquote" and attr_name == "expandable":
                    argument = "expandable"
                    continue
                raise EntityParseError(
                    "Expected equal sign in declaration of an attribute of the tag "
                    f'"{name}" at byte offset {begin}'
                )
            i = skip_spaces(i + 1)
            if i >= n:
                raise EntityParseError(f'Unclosed start tag "{name}" at byte offset {begin}')
            if data[i] in (ord('"'), ord("'")):
                quote = data[i]
                value_end = data.find(bytes([quote]), i + 1)
                if value_end < 0:
                    raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
                value = _decode_html_entities(data[i + 1 : value_end]).decode("utf-8", "replace")
                i = value_end + 1
            else:
                token_start = i
                while i < n and (_is_ascii_alnum(data[i]) or data[i] in b".-"):
                    i += 1
                value = data[token_start:i].decode("ascii").lower()
                if i >= n or (data[i] not in _SPACES and data[i] != _GT):
                    raise EntityParseError(f"Unexpected end of name token at byte offset {token_start}")
            if name == "a" and attr_name == "href":
                argument = value
            elif name == "code" and attr_name == "class" and value.startswith("language-"):
                argument = value[len("language-") :]
            elif name == "span" and attr_name == "class" and value.startswith("tg-"):
                argument = value[len("tg-") :]
            elif name == "tg-emoji" and attr_name == "emoji-id":
                argument = value
            elif name == "blockquote" and attr_name == "expandable":
                argument = "expandable"
        i += 1  # '>'
        if name == "span" and argument != "spoiler":
            raise EntityParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
        stack.append(_OpenTag(name, argument, out_offset()))

    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    for entity in entities:
        entity.pop("_language", None)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return out.decode("utf-8"), entities


def _close_html_tag(tag: _OpenTag, end: int, entities: list[JSON]) -> None:
    length = end - tag.offset
    if length <= 0:
        return
    entity: JSON = {"offset": tag.offset, "length": length}
    if tag.name in _SIMPLE_TAG_ENTITIES:
        entity["type"] = _SIMPLE_TAG_ENTITIES[tag.name]
        if tag.name == "code" and tag.argument:
            entity["_language"] = tag.argument  # consumed by an enclosing <pre>
    elif tag.name == "a":
        if not tag.argument:
            return
        entity.update(type="text_link", url=tag.argument)
    elif tag.name == "pre":
        entity["type"] = "pre"
        inner = entities[-1] if entities else None
        if (
            inner is not None
            and inner["type"] == "code"
            and inner["offset"] == tag.offset
            and inner["length"] == length
        ):
            entities.pop()
            if inner.get("_language"):
                entity["language"] = inner["_language"]
    elif tag.name == "blockquote":
        entity["type"] = "expandable_blockquote" if tag.argument else "blockquote"
    elif tag.name == "tg-emoji":
        if not tag.argument:
            return
        entity.update(type="custom_emoji", custom_emoji_id=tag.argument)
    else:  # pragma: no cover - guarded by _HTML_TAGS
        return
    entities.append(entity)


_AUTO_ENTITY_RE = re.compile(
    r"(?P<url>\b(?:https?://|www\.)[^\s<>\"]+)"
    r"|(?P<bot_command>(?<![\w/@])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/@]))"
    r"|(?P<mention>(?<![\w@/])@[A-Za-z0-9_]{3,32}(?![\w@]))"
)
_URL_TRAILING_PUNCTUATION = ".,;:!?)]}'\""


def detect_entities(text: str) -> list[JSON]:
    """Entities Telegram attaches to a plain incoming text by itself.

    Detects ``bot_command`` (``/cmd`` or ``/cmd@bot``), ``mention``
    (``@username``) and ``url`` (``http(s)://…`` or ``www.…``, trailing
    punctuation excluded).  Offsets and lengths are in UTF-16 code units.
    Bare domains, hashtags, e-mails etc. are not detected; pass explicit
    entities for those.
    """
    found: list[JSON] = []
    for match in _AUTO_ENTITY_RE.finditer(text):
        kind = match.lastgroup
        assert kind is not None
        start, value = match.start(), match.group()
        if kind == "url":
            value = value.rstrip(_URL_TRAILING_PUNCTUATION)
            if value.lower() in {"http://", "https://", "www."}:
                continue
        found.append({"type": kind, "offset": utf16_len(text[:start]), "length": utf16_len(value)})
    return found


def mention_entity(text: str, username: str) -> JSON:
    """A ``mention`` entity for the first ``@username`` in ``text``.

    Raises:
        ValueError: if ``@username`` does not occur in ``text``.
    """
    needle = "@" + username.lstrip("@")
    index = text.find(needle)
    if index < 0:
        raise ValueError(f"{needle!r} not found in {text!r}")
    return {"type": "mention", "offset": utf16_len(text[:index]), "length": utf16_len(needle)}


# --------------------------------------------------------------------------------------
# Request decoding helpers
# --------------------------------------------------------------------------------------


_INT_RE = re.compile(r"-?\d+")


def _decode_param(name: str, value: Any) -> Any:
    """Decode one parameter received as a form string (or JSON value)."""
    if name in _JSON_PARAMS:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                label = _JSON_PARAM_LABELS.get(name, name)
                raise ApiError(400, f"Bad Request: can't parse {label} JSON object") from exc
        return value
    if name in _CHAT_ID_PARAMS:
        if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
            return int(value)
        return value
    if name in _INT_PARAMS:
        if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
            return int(value)
        return value
    if name in _BOOL_PARAMS and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "1"}:
            return True
        if lowered in {"false", "0", ""}:
            return False
    return value


def _opt_int(params: Mapping[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"Bad Request: wrong parameter {name} in request")
    return int(value)


def _opt_str(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        return json.dumps(value)
    return value


def _chat_key(chat_id: int | str) -> str:
    return str(chat_id)


def _strip_reply(message: JSON) -> JSON:
    """A copy of ``message`` fit to be embedded as ``reply_to_message``."""
    embedded = copy.deepcopy(message)
    embedded.pop("reply_to_message", None)
    return embedded


def _validate_reply_markup(markup: Any) -> JSON | None:
    """Check ``reply_markup`` like the server does; return it or raise ApiError."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise ApiError(
                400,
                'Bad Request: can\'t parse inline keyboard button: Field "inline_keyboard" '
                "must be an Array of Arrays",
            )
        for row in rows:
            for button in row:
                _validate_inline_button(button)
    elif "keyboard" in markup:
        rows = markup["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    elif not (markup.get("remove_keyboard") or markup.get("force_reply")):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    return markup


def _validate_inline_button(button: Any) -> None:
    if not isinstance(button, dict):
        raise ApiError(
            400, "Bad Request: can't parse inline keyboard button: InlineKeyboardButton must be an Object"
        )
    if not isinstance(button.get("text"), str):
        raise ApiError(
            400, 'Bad Request: can\'t parse inline keyboard button: Field "text" must be of type String'
        )
    if not _BUTTON_ACTIONS & button.keys():
        raise ApiError(
            400,
            "Bad Request: can't parse inline keyboard button: "
            "Text buttons are unallowed in the inline keyboard",
        )
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= (MAX_CALLBACK_DATA_BYTES):
            raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
    if "url" in button and not button["url"]:
        raise ApiError(400, "Bad Request: BUTTON_URL_INVALID")


def _update_type(update: Mapping[str, Any]) -> str:
    for key in update:
        if key != "update_id":
            return key
    return ""


@dataclasses.dataclass
class _Failure:
    status: int
    description: str
    parameters: JSON | None
    body: bytes | None
    delay: float


@dataclasses.dataclass
class _Described:
    """A handler result carrying the ``description`` of a successful reply."""

    result: Any
    description: str


_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request: injected error",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: _CONFLICT_OTHER_POLL,
    500: "Internal Server Error",
    502: "Bad Gateway",
}


# --------------------------------------------------------------------------------------
# The peer
# --------------------------------------------------------------------------------------


class BotApiPeer:
    """A fake Telegram Bot API server with a test-side API.

    Lifecycle: use ``async with BotApiPeer() as peer`` (server in the running
    loop; :meth:`wait_for` must then not be used, use :meth:`wait_for_async`)
    or ``with BotApiPeer() as peer`` / :meth:`start`/:meth:`stop` (server in a
    daemon thread with its own loop; both wait methods work).  Stopping
    releases pending long polls at once and closes the socket.

    Chats: unless ``strict_chats`` is set, any ``chat_id`` is accepted; chats
    not introduced by an update are synthesised (positive id: private chat,
    ``-100…``: supergroup, other negative: group).  Message ids are sequential
    per chat and shared by incoming and outgoing messages.

    Update queue: updates get sequential ``update_id`` s starting at
    ``first_update_id`` and stay queued until confirmed by ``getUpdates`` with
    a higher ``offset`` (or dropped by ``deleteWebhook``/``setWebhook`` with
    ``drop_pending_updates``).
    """

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        bot: BotIdentity | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        strict_chats: bool = False,
        first_update_id: int = 100_000_001,
    ) -> None:
        self.token = token
        if bot is None:
            prefix = token.split(":", 1)[0]
            bot = BotIdentity(id=int(prefix)) if prefix.isdigit() else BotIdentity()
        self.bot = bot
        self.host = host
        self.strict_chats = strict_chats
        self._requested_port = port
        self._port: int | None = None

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)

        self._calls: list[Call] = []
        self._sent: list[SentMessage] = []
        self._downloads: list[str] = []
        self._updates: list[JSON] = []
        self._next_update_id = first_update_id
        self._allowed_updates: frozenset[str] | None = None
        self._poll_generation = 0
        self._messages: dict[tuple[str, int], JSON] = {}
        self._next_message_id: dict[str, int] = {}
        self._chats: dict[str, JSON] = {}
        self._users: dict[int, JSON] = {}
        self._files: dict[str, RegisteredFile] = {}
        self._files_by_path: dict[str, RegisteredFile] = {}
        self._file_counter = itertools.count(1)
        self._callback_counter = itertools.count(4_000_000_000_000_000_001)
        self._open_callback_queries: dict[str, JSON] = {}
        self._commands: dict[tuple[str, str], list[JSON]] = {}
        self._bot_texts: dict[tuple[str, str], str] = {}
        self._webhook = WebhookConfig()
        self._failures: dict[str, deque[_Failure]] = {}
        self._delays: dict[str, deque[float]] = {}
        self._custom: dict[str, tuple[str, MethodHandler]] = {}

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._updates_event: asyncio.Event | None = None
        self._closing = False

        self._methods: dict[str, tuple[str, Callable[[JSON], Any]]] = {}
        for name, handler in (
            ("getMe", self._m_get_me),
            ("getUpdates", self._m_get_updates_marker),
            ("sendMessage", self._m_send_message),
            ("sendDocument", self._m_send_document),
            ("sendChatAction", self._m_send_chat_action),
            ("setMyCommands", self._m_set_my_commands),
            ("getMyCommands", self._m_get_my_commands),
            ("deleteMyCommands", self._m_delete_my_commands),
            ("setWebhook", self._m_set_webhook),
            ("deleteWebhook", self._m_delete_webhook),
            ("getWebhookInfo", self._m_get_webhook_info),
            ("getFile", self._m_get_file),
            ("answerCallbackQuery", self._m_answer_callback_query),
            ("editMessageText", self._m_edit_message_text),
            ("editMessageReplyMarkup", self._m_edit_message_reply_markup),
            ("deleteMessage", self._m_delete_message),
            ("setMyDescription", self._bot_text_setter("description")),
            ("setMyShortDescription", self._bot_text_setter("short_description")),
            ("setMyName", self._bot_text_setter("name")),
            ("getMyDescription", self._bot_text_getter("description")),
            ("getMyShortDescription", self._bot_text_getter("short_description")),
            ("getMyName", self._bot_text_getter("name")),
            ("close", self._m_true),
            ("logOut", self._m_true),
        ):
            self._methods[name.lower()] = (name, handler)

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The bound TCP port (only valid while running)."""
        if self._port is None:
            raise RuntimeError("BotApiPeer is not running")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Value for PTB's ``base_url`` (PTB appends the token)."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """Value for PTB's ``base_file_url`` (PTB appends the token)."""
        return f"{self.url}/file/bot"

    @property
    def api_url(self) -> str:
        """``{base_url}{token}``: append ``/<method>`` for raw HTTP requests."""
        return f"{self.base_url}{self.token}"

    async def astart(self) -> BotApiPeer:
        """Start serving in the running event loop; returns ``self``."""
        if self._loop is not None:
            raise RuntimeError("BotApiPeer already started")
        await self._start_server(asyncio.get_running_loop())
        return self

    async def astop(self) -> None:
        """Stop a server started with :meth:`astart` (idempotent)."""
        if self._loop is None or self._thread is not None:
            return
        await self._stop_server()
        self._loop = None

    def start(self) -> BotApiPeer:
        """Start serving in a daemon thread with its own loop; returns ``self``."""
        if self._loop is not None:
            raise RuntimeError("BotApiPeer already started")
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start_server(loop))
            except BaseException as exc:  # reported to start()
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=run, name="BotApiPeer", daemon=True)
        self._thread = thread
        thread.start()
        if not ready.wait(30):
            raise RuntimeError("BotApiPeer did not start within 30 s")
        if errors:
            self._thread = None
            self._loop = None
            raise RuntimeError("BotApiPeer failed to start") from errors[0]
        return self

    def stop(self) -> None:
        """Stop a server started with :meth:`start` (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._stop_server(), loop)
        try:
            future.result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            self._thread = None
            self._loop = None

    def __enter__(self) -> BotApiPeer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> BotApiPeer:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    async def _start_server(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._closing = False
        self._updates_event = asyncio.Event()
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES + 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_port))
            site = web.SockSite(runner, sock)
            await site.start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            self._loop = None
            raise
        self._port = sock.getsockname()[1]
        self._runner = runner

    async def _stop_server(self) -> None:
        self._closing = True
        self._wake_pollers()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._port = None

    def _wake_pollers(self) -> None:
        """Wake every pending ``getUpdates`` (must run in the server loop)."""
        event = self._updates_event
        if event is not None:
            self._updates_event = asyncio.Event()
            event.set()

    def _wake_pollers_threadsafe(self) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(self._wake_pollers)

    # ------------------------------------------------------------------ test-side API: setup

    def fail_next(
        self,
        method: str,
        *,
        status: int = 500,
        description: str | None = None,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
        times: int = 1,
        body: bytes | None = None,
        delay: float = 0.0,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail.

        The call is still recorded in :attr:`calls`, then answered with HTTP
        ``status`` and ``{"ok": false, "error_code": status, "description": ...}``
        instead of being executed.  ``description`` defaults to Telegram's text
        for the status (429: ``Too Many Requests: retry after N``; ``retry_after``
        defaults to 1 for 429 and is sent in ``parameters``).  ``body`` replaces
        the whole response body (e.g. an nginx HTML page for 502).  ``delay``
        seconds pass before the answer.  Use :data:`FILE_DOWNLOAD` as ``method``
        to break file downloads.  Failures queue up in order per method.
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        parameters: JSON = {}
        if retry_after is not None:
            parameters["retry_after"] = retry_after
        if migrate_to_chat_id is not None:
            parameters["migrate_to_chat_id"] = migrate_to_chat_id
        if description is None:
            if status == 429:
                description = f"Too Many Requests: retry after {retry_after}"
            elif status == 400 and migrate_to_chat_id is not None:
                description = "Bad Request: group chat was upgraded to a supergroup chat"
            else:
                description = _DEFAULT_DESCRIPTIONS.get(status)
                if description is None:
                    try:
                        description = HTTPStatus(status).phrase
                    except ValueError:
                        description = f"Error {status}"
        failure = _Failure(status, description, parameters or None, body, delay)
        with self._lock:
            queue = self._failures.setdefault(self._method_key(method), deque())
            queue.extend(dataclasses.replace(failure) for _ in range(times))

    def delay_next(self, method: str, seconds: float, *, times: int = 1) -> None:
        """Delay the answer to the next ``times`` calls of ``method``, then serve them."""
        with self._lock:
            self._delays.setdefault(self._method_key(method), deque()).extend([seconds] * times)

    def restart_update_ids(self, first_update_id: int) -> None:
        """Number the next updates from ``first_update_id``, as Telegram does after a quiet week.

        The Bot API picks the next ``update_id`` at random (possibly lower than
        every id before) when a bot had no updates for at least a week.
        """
        with self._lock:
            self._next_update_id = first_update_id

    def clear_failures(self) -> None:
        """Forget all queued :meth:`fail_next`/:meth:`delay_next` injections."""
        with self._lock:
            self._failures.clear()
            self._delays.clear()

    def set_method(self, method: str, handler: MethodHandler) -> None:
        """Serve (or override) ``method`` with ``handler(params) -> result``.

        The handler runs in the server loop while the peer's lock is held; it
        may raise :class:`ApiError`.  Its return value becomes ``result``.
        """
        with self._lock:
            self._custom[method.lower()] = (method, handler)

    def register_chat(
        self,
        chat_id: int,
        *,
        chat_type: str | None = None,
        title: str | None = None,
        username: str | None = None,
        is_forum: bool = False,
        first_name: str | None = None,
    ) -> JSON:
        """Define (or redefine) a chat; returns the ``Chat`` object.

        ``chat_type`` (``private``/``group``/``supergroup``/``channel``) defaults
        from the id like unknown chats (see class docstring).
        """
        if chat_type is None:
            chat_type = self._default_chat_type(chat_id)
        chat: JSON = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            user = self._users.get(chat_id)
            chat["first_name"] = first_name or (user or {}).get("first_name") or "Tester"
        else:
            chat["title"] = title or f"Test chat {chat_id}"
        if username:
            chat["username"] = username
        if is_forum:
            chat["is_forum"] = True
        with self._lock:
            self._chats[_chat_key(chat_id)] = chat
        return copy.deepcopy(chat)

    def register_file(
        self,
        content: bytes,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
        file_size: int | None = None,
        kind: str = "documents",
    ) -> RegisteredFile:
        """Make ``content`` fetchable via ``getFile`` + download.

        ``file_size`` overrides the reported size (e.g. to exercise the 20 MB
        ``getFile`` limit without allocating it); downloads serve ``content``.
        """
        with self._lock:
            number = next(self._file_counter)
            suffix = ""
            if file_name and "." in file_name:
                suffix = "." + file_name.rsplit(".", 1)[1]
            record = RegisteredFile(
                file_id=f"BQACAgIAAxkBAAIB{number:06d}PeerFileId{number:04d}",
                file_unique_id=f"AgADPeer{number:04d}",
                file_path=f"{kind}/file_{number}{suffix}",
                content=bytes(content),
                file_size=len(content) if file_size is None else file_size,
                file_name=file_name,
                mime_type=mime_type,
            )
            self._files[record.file_id] = record
            self._files_by_path[record.file_path] = record
        return record

    # ------------------------------------------------------------------ test-side API: updates

    def enqueue(self, update: Mapping[str, Any]) -> JSON:
        """Queue a raw update (``{"edited_message": {...}}`` etc.).

        ``update_id`` is assigned (any given one is replaced).  Messages inside
        are stored so the bot can reply to/edit/delete them.  Returns a copy of
        the queued ``Update``.
        """
        with self._lock:
            queued: JSON = {"update_id": self._next_update_id}
            queued.update((k, copy.deepcopy(v)) for k, v in update.items() if k != "update_id")
            self._next_update_id += 1
            for kind in ("message", "edited_message", "channel_post", "edited_channel_post"):
                message = queued.get(kind)
                if isinstance(message, dict) and "chat" in message:
                    self._store_message(message)
            self._updates.append(queued)
            result = copy.deepcopy(queued)
        self._wake_pollers_threadsafe()
        return result

    def private_text(
        self,
        user_id: int,
        text: str,
        *,
        first_name: str | None = None,
        username: str | None = None,
        last_name: str | None = None,
        language_code: str | None = None,
        entities: list[JSON] | None = None,
        reply_to_message: JSON | int | None = None,
    ) -> JSON:
        """Queue a text message from ``user_id`` in its private chat with the bot.

        ``entities=None`` auto-detects commands, mentions and URLs like
        Telegram (see :func:`detect_entities`); pass ``[]`` for none.
        ``reply_to_message`` is a message dict or the id of a stored message
        in that chat.  Returns the ``Update``.
        """
        with self._lock:
            user = self._user(user_id, first_name, username, last_name, language_code)
            chat = self._private_chat(user)
            message = self._incoming_message(chat, user, reply_to_message)
            self._set_text(message, "text", "entities", text, entities)
        return self.enqueue({"message": message})

    def group_text(
        self,
        chat_id: int,
        user_id: int,
        text: str,
        entities: list[JSON] | None = None,
        reply_to_message: JSON | int | None = None,
        sender_chat: JSON | int | None = None,
        *,
        first_name: str | None = None,
        username: str | None = None,
        title: str | None = None,
        message_thread_id: int | None = None,
        is_automatic_forward: bool = False,
    ) -> JSON:
        """Queue a text message in group ``chat_id``.

        ``entities=None`` auto-detects ``@mentions`` (e.g. ``@casebot_test_bot``),
        ``/commands`` and URLs; pass a list (see :func:`mention_entity`) to
        override.  ``sender_chat`` makes the message anonymous like Telegram:
        the group itself (its id) = anonymous admin (``from`` is
        ``@GroupAnonymousBot``); another chat id/``Chat`` dict = sent on behalf
        of that channel (``from`` is ``@Channel_Bot``; with
        ``is_automatic_forward`` it is a linked-channel post, ``from`` is
        Telegram 777000).  ``user_id`` is then not exposed.  ``title`` names
        the group when it is first seen.  Returns the ``Update``.
        """
        with self._lock:
            chat = self._group_chat(chat_id, title)
            user: JSON
            sender: JSON | None = None
            if sender_chat is None:
                user = self._user(user_id, first_name, username, None, None)
            else:
                sender_id = sender_chat["id"] if isinstance(sender_chat, dict) else sender_chat
                if sender_id == chat_id:
                    user, sender = dict(GROUP_ANONYMOUS_BOT), copy.deepcopy(chat)
                else:
                    sender = (
                        copy.deepcopy(sender_chat)
                        if isinstance(sender_chat, dict)
                        else {"id": sender_id, "type": "channel", "title": f"Channel {sender_id}"}
                    )
                    user = dict(TELEGRAM_SERVICE_USER if is_automatic_forward else CHANNEL_BOT)
            message = self._incoming_message(chat, user, reply_to_message)
            if sender is not None:
                message["sender_chat"] = sender
            if is_automatic_forward:
                message["is_automatic_forward"] = True
            if message_thread_id is not None:
                message["message_thread_id"] = message_thread_id
                message["is_topic_message"] = True
            self._set_text(message, "text", "entities", text, entities)
        return self.enqueue({"message": message})

    def document(
        self,
        chat_id: int,
        user_id: int,
        file_name: str,
        content: bytes,
        mime_type: str,
        caption: str | None = None,
        *,
        caption_entities: list[JSON] | None = None,
        file_size: int | None = None,
        first_name: str | None = None,
        username: str | None = None,
    ) -> JSON:
        """Queue a document message from ``user_id`` in ``chat_id``.

        ``chat_id == user_id`` means the private chat.  The file is registered
        (see :meth:`register_file`; ``file_size`` overrides the reported size),
        so ``getFile`` and the download route serve ``content``.  Returns the
        ``Update``; the document is at ``update["message"]["document"]``.
        """
        record = self.register_file(content, file_name=file_name, mime_type=mime_type, file_size=file_size)
        with self._lock:
            user = self._user(user_id, first_name, username, None, None)
            chat = self._private_chat(user) if chat_id == user_id else self._group_chat(chat_id, None)
            message = self._incoming_message(chat, user, None)
            message["document"] = {
                "file_id": record.file_id,
                "file_unique_id": record.file_unique_id,
                "file_name": file_name,
                "mime_type": mime_type,
                "file_size": record.file_size,
            }
            if caption is not None:
                self._set_text(message, "caption", "caption_entities", caption, caption_entities)
        return self.enqueue({"message": message})

    def callback_query(
        self,
        user_id: int,
        chat_id: int,
        message_id: int,
        data: str,
        *,
        first_name: str | None = None,
        username: str | None = None,
    ) -> JSON:
        """Queue a button press by ``user_id`` on message ``message_id`` in ``chat_id``.

        The update carries the stored message (normally one the bot sent with
        an inline keyboard); an unknown message is synthesised as a bot
        message.  The query stays answerable once with ``answerCallbackQuery``.
        Returns the ``Update``; the query id is ``update["callback_query"]["id"]``.
        """
        with self._lock:
            user = self._user(user_id, first_name, username, None, None)
            stored = self._messages.get((_chat_key(chat_id), message_id))
            if stored is None:
                chat = self._resolve_chat(chat_id, auto=True)
                message: JSON = {
                    "message_id": message_id,
                    "date": int(time.time()),
                    "chat": chat,
                    "from": self.bot.as_user(),
                }
            else:
                message = copy.deepcopy(stored)
            query_id = str(next(self._callback_counter))
            query = {
                "id": query_id,
                "from": user,
                "chat_instance": str(abs(hash((self.bot.id, chat_id))) % 10**19),
                "message": message,
                "data": data,
            }
            self._open_callback_queries[query_id] = query
        return self.enqueue({"callback_query": query})

    # ------------------------------------------------------------------ test-side API: inspection

    @property
    def calls(self) -> list[Call]:
        """All authorised requests so far, in arrival order.

        The list is a copy; the ``params`` dicts are the recorded ones, do not
        mutate them.
        """
        with self._lock:
            return list(self._calls)

    def calls_of(self, method: str) -> list[JSON]:
        """The params of every recorded call of ``method`` (case-insensitive)."""
        key = method.lower()
        with self._lock:
            return [call.params for call in self._calls if call.method.lower() == key]

    def clear_calls(self) -> None:
        """Forget recorded calls and sent messages (the chat state is kept)."""
        with self._lock:
            self._calls.clear()
            self._sent.clear()
            self._downloads.clear()

    def sent_messages(self, chat_id: int | str | None = None) -> list[SentMessage]:
        """Successful ``sendMessage`` calls, optionally only to ``chat_id``."""
        with self._lock:
            return [
                sent
                for sent in self._sent
                if chat_id is None or _chat_key(sent.chat_id) == _chat_key(chat_id)
            ]

    def get_message(self, chat_id: int | str, message_id: int) -> JSON | None:
        """The current state of a stored message (after edits), ``None`` if unknown/deleted."""
        with self._lock:
            message = self._messages.get((_chat_key(chat_id), message_id))
            return copy.deepcopy(message) if message is not None else None

    def pending_updates(self) -> list[JSON]:
        """Updates not yet confirmed by the bot (copies)."""
        with self._lock:
            return copy.deepcopy(self._updates)

    @property
    def downloads(self) -> list[str]:
        """``file_path`` of every successful file download, in order."""
        with self._lock:
            return list(self._downloads)

    @property
    def webhook(self) -> WebhookConfig:
        """The current webhook configuration."""
        with self._lock:
            return self._webhook

    def commands(self, scope: JSON | None = None, language_code: str = "") -> list[JSON] | None:
        """Commands set for ``scope`` (default scope if None) and language.

        ``None`` if never set or deleted (``getMyCommands`` then returns ``[]``).
        """
        with self._lock:
            stored = self._commands.get((self._scope_key(scope), language_code))
            return copy.deepcopy(stored) if stored is not None else None

    def wait_for(
        self,
        match: str | Callable[[Call], bool],
        timeout: float = 5.0,
        *,
        since: int = 0,
    ) -> Call:
        """Block until a call matching ``match`` is recorded; return it.

        ``match`` is a method name (case-insensitive) or a predicate on
        :class:`Call`.  Only calls with index ``>= since`` in :attr:`calls`
        count (use ``since=len(peer.calls)`` to wait for a new call).  Must not
        be used from the loop the server runs in (use :meth:`wait_for_async`).

        Raises:
            AssertionError: on timeout, listing the recorded calls.
        """
        predicate = self._predicate(match)
        self._check_not_in_server_loop()
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self._find_call(predicate, since)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(self._timeout_message(match, timeout, since))
                self._cond.wait(remaining)

    async def wait_for_async(
        self,
        match: str | Callable[[Call], bool],
        timeout: float = 5.0,
        *,
        since: int = 0,
    ) -> Call:
        """Async :meth:`wait_for`: usable in the server's loop and in others."""
        predicate = self._predicate(match)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = self._find_call(predicate, since)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                with self._lock:
                    raise AssertionError(self._timeout_message(match, timeout, since))
            await asyncio.sleep(0.01)

    def _check_not_in_server_loop(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is self._loop:
            raise RuntimeError(
                "BotApiPeer.wait_for would block the loop serving the peer; "
                "use `await peer.wait_for_async(...)`"
            )

    @staticmethod
    def _predicate(match: str | Callable[[Call], bool]) -> Callable[[Call], bool]:
        if isinstance(match, str):
            name = match.lower()
            return lambda call: call.method.lower() == name
        return match

    def _find_call(self, predicate: Callable[[Call], bool], since: int) -> Call | None:
        for call in self._calls[since:]:
            if predicate(call):
                return call
        return None

    def _timeout_message(self, match: str | Callable[[Call], bool], timeout: float, since: int) -> str:
        wanted = match if isinstance(match, str) else getattr(match, "__name__", repr(match))
        lines = [f"no call matching {wanted!r} within {timeout:g}s; recorded calls:"]
        polls = 0
        for index, call in enumerate(self._calls):
            if call.method == "getUpdates":
                polls += 1
                continue
            marker = "  " if index >= since else "x "
            text = json.dumps(call.params, default=repr, ensure_ascii=False)
            if len(text) > 300:
                text = text[:297] + "..."
            lines.append(f"{marker}#{index} {call.method} {text}")
        lines.append(f"  (+{polls} getUpdates calls; 'x' = before since={since})")
        return "\n".join(lines)

    # ------------------------------------------------------------------ internal state helpers

    @staticmethod
    def _default_chat_type(chat_id: int) -> str:
        if chat_id > 0:
            return "private"
        return "supergroup" if str(chat_id).startswith("-100") else "group"

    def _method_key(self, method: str) -> str:
        return method.lower()

    def _user(
        self,
        user_id: int,
        first_name: str | None,
        username: str | None,
        last_name: str | None,
        language_code: str | None,
    ) -> JSON:
        known = self._users.get(user_id, {})
        user: JSON = {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name or known.get("first_name") or "Tester",
        }
        for key, given in (
            ("last_name", last_name),
            ("username", username),
            ("language_code", language_code),
        ):
            value = known.get(key) if given is None else given
            if value is not None:
                user[key] = value
        self._users[user_id] = user
        return copy.deepcopy(user)

    def _private_chat(self, user: JSON) -> JSON:
        chat: JSON = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        for key in ("last_name", "username"):
            if key in user:
                chat[key] = user[key]
        self._chats[_chat_key(user["id"])] = chat
        return copy.deepcopy(chat)

    def _group_chat(self, chat_id: int, title: str | None) -> JSON:
        known = self._chats.get(_chat_key(chat_id))
        if known is None or (title and known.get("title") != title):
            chat_type = known["type"] if known else self._default_chat_type(chat_id)
            if chat_type == "private":
                chat_type = "supergroup"
            known = {"id": chat_id, "type": chat_type, "title": title or f"Test chat {chat_id}"}
            self._chats[_chat_key(chat_id)] = known
        return copy.deepcopy(known)

    def _resolve_chat(self, chat_id: Any, *, auto: bool | None = None) -> JSON:
        if chat_id is None or chat_id == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        if isinstance(chat_id, str):
            wanted = chat_id.lstrip("@").lower()
            for chat in self._chats.values():
                if str(chat.get("username", "")).lower() == wanted:
                    return copy.deepcopy(chat)
            raise ApiError(400, "Bad Request: chat not found")
        if isinstance(chat_id, bool) or not isinstance(chat_id, int) or chat_id == 0:
            raise ApiError(400, "Bad Request: chat not found")
        known = self._chats.get(_chat_key(chat_id))
        if known is not None:
            return copy.deepcopy(known)
        may_create = not self.strict_chats if auto is None else auto
        if not may_create:
            raise ApiError(400, "Bad Request: chat not found")
        chat_type = self._default_chat_type(chat_id)
        created: JSON = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            created["first_name"] = self._users.get(chat_id, {}).get("first_name", "Tester")
        else:
            created["title"] = f"Test chat {chat_id}"
        self._chats[_chat_key(chat_id)] = created
        return copy.deepcopy(created)

    def _new_message_id(self, chat_id: int | str) -> int:
        key = _chat_key(chat_id)
        number = self._next_message_id.get(key, 1)
        self._next_message_id[key] = number + 1
        return number

    def _store_message(self, message: JSON) -> None:
        chat_id = message["chat"]["id"]
        key = (_chat_key(chat_id), int(message["message_id"]))
        self._messages[key] = copy.deepcopy(message)
        current = self._next_message_id.get(_chat_key(chat_id), 1)
        self._next_message_id[_chat_key(chat_id)] = max(current, key[1] + 1)

    def _incoming_message(self, chat: JSON, user: JSON, reply_to_message: JSON | int | None) -> JSON:
        message: JSON = {
            "message_id": self._new_message_id(chat["id"]),
            "from": user,
            "chat": chat,
            "date": int(time.time()),
        }
        if isinstance(reply_to_message, int):
            stored = self._messages.get((_chat_key(chat["id"]), reply_to_message))
            if stored is None:
                raise KeyError(f"reply_to_message: no stored message {reply_to_message} in chat {chat['id']}")
            message["reply_to_message"] = _strip_reply(stored)
        elif reply_to_message is not None:
            message["reply_to_message"] = _strip_reply(reply_to_message)
        return message

    @staticmethod
    def _set_text(
        message: JSON, field: str, entities_field: str, text: str, entities: list[JSON] | None
    ) -> None:
        message[field] = text
        found = detect_entities(text) if entities is None else copy.deepcopy(entities)
        if found:
            message[entities_field] = found

    @staticmethod
    def _scope_key(scope: Any) -> str:
        if scope is None:
            scope = {"type": "default"}
        return json.dumps(scope, sort_keys=True)

    def _format_text(self, text: str, parse_mode: Any, entities: Any) -> tuple[str, list[JSON]]:
        """Apply ``parse_mode``/``entities`` like the server's ``get_formatted_text``."""
        mode = parse_mode.lower() if isinstance(parse_mode, str) else ""
        if text and mode and mode != "none":
            if mode == "html":
                try:
                    return parse_html(text)
                except EntityParseError as exc:
                    raise ApiError(400, f"Bad Request: can't parse entities: {exc}") from exc
            if mode in {"markdown", "markdownv2"}:
                # Not emulated: the text is kept verbatim, without entities.
                return text, []
            raise ApiError(400, "Bad Request: unsupported parse_mode")
        if entities is None:
            return text, []
        if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
            raise ApiError(400, "Bad Request: can't parse entities JSON object")
        return text, copy.deepcopy(entities)

    def _resolve_reply(self, chat_id: int | str, params: JSON) -> JSON | None:
        reply = params.get("reply_parameters")
        if reply is None and params.get("reply_to_message_id") is not None:
            reply = {
                "message_id": params["reply_to_message_id"],
                "allow_sending_without_reply": bool(params.get("allow_sending_without_reply")),
            }
        if reply is None:
            return None
        if not isinstance(reply, dict) or not isinstance(reply.get("message_id"), int):
            raise ApiError(400, "Bad Request: can't parse reply parameters JSON object")
        target_chat = reply.get("chat_id", chat_id)
        stored = self._messages.get((_chat_key(target_chat), reply["message_id"]))
        if stored is None:
            if reply.get("allow_sending_without_reply"):
                return None
            raise ApiError(400, "Bad Request: message to be replied not found")
        return _strip_reply(stored)

    def _outgoing_message(self, chat: JSON, params: JSON) -> JSON:
        message: JSON = {
            "message_id": self._new_message_id(chat["id"]),
            "from": self.bot.as_user(),
            "chat": chat,
            "date": int(time.time()),
        }
        thread_id = _opt_int(params, "message_thread_id")
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        reply_to = self._resolve_reply(chat["id"], params)
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        return message

    # ------------------------------------------------------------------ HTTP layer

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/file/bot"):
            return await self._handle_file(request, path[len("/file/bot") :])
        if not path.startswith("/bot"):
            return self._error_response(ApiError(404, "Not Found"))
        token, sep, method = path[len("/bot") :].partition("/")
        if not sep or not method or "/" in method:
            return self._error_response(ApiError(404, "Not Found"))
        if token != self.token:
            return self._error_response(ApiError(401, "Unauthorized"))
        try:
            params = await self._read_params(request)
        except ApiError as exc:
            return self._error_response(exc)
        key = method.lower()
        with self._lock:
            custom = self._custom.get(key)
            known = custom or self._methods.get(key)
            canonical = known[0] if known else method
            self._calls.append(Call(canonical, params))
            self._cond.notify_all()
            failures = self._failures.get(key)
            failure = failures.popleft() if failures else None
            delays = self._delays.get(key)
            delay = delays.popleft() if delays else 0.0
        if failure is not None:
            return await self._failure_response(failure)
        if delay:
            await asyncio.sleep(delay)
        if known is None:
            return self._error_response(ApiError(404, "Not Found"))
        try:
            if key == "getupdates" and custom is None:
                result: Any = await self._get_updates(params)
            else:
                with self._lock:
                    result = known[1](copy.deepcopy(params))
        except ApiError as exc:
            return self._error_response(exc)
        body: JSON = {"ok": True}
        if isinstance(result, _Described):
            body["result"] = result.result
            body["description"] = result.description
        else:
            body["result"] = result
        return web.json_response(body)

    async def _read_params(self, request: web.Request) -> JSON:
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, UploadedFile] = {}
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError as exc:
                    raise ApiError(400, "Bad Request: can't parse JSON encoded request") from exc
                if not isinstance(body, dict):
                    raise ApiError(400, "Bad Request: can't parse JSON encoded request")
                raw.update(body)
            else:
                form = await request.post()
                for name, value in form.items():
                    if isinstance(value, web.FileField):
                        files[name] = UploadedFile(
                            field=name,
                            filename=value.filename,
                            content_type=value.content_type,
                            content=value.file.read(),
                        )
                    elif isinstance(value, bytes):
                        raw[name] = value.decode("utf-8", "replace")
                    else:
                        raw[name] = value
        params: JSON = {name: _decode_param(name, value) for name, value in raw.items()}
        for name, upload in files.items():
            params.setdefault(name, upload)
        # Resolve attach://<name> references to their file parts.
        for name, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):
                attached = files.get(value[len("attach://") :])
                if attached is not None:
                    params[name] = attached
        return params

    async def _failure_response(self, failure: _Failure) -> web.Response:
        if failure.delay:
            await asyncio.sleep(failure.delay)
        if failure.body is not None:
            return web.Response(status=failure.status, body=failure.body, content_type="text/html")
        return self._error_response(ApiError(failure.status, failure.description, failure.parameters))

    @staticmethod
    def _error_response(error: ApiError) -> web.Response:
        return web.json_response(error.body(), status=error.status)

    async def _handle_file(self, request: web.Request, rest: str) -> web.StreamResponse:
        token, sep, file_path = rest.partition("/")
        with self._lock:
            record = self._files_by_path.get(file_path) if sep else None
            failures = self._failures.get(self._method_key(FILE_DOWNLOAD))
            failure = failures.popleft() if failures else None
        if failure is not None:
            return await self._failure_response(failure)
        if token != self.token or record is None or request.method not in {"GET", "HEAD"}:
            return self._error_response(ApiError(404, "Not Found"))
        with self._lock:
            self._downloads.append(file_path)
            self._cond.notify_all()
        return web.Response(body=record.content, content_type="application/octet-stream")

    # ------------------------------------------------------------------ Bot API methods

    def _m_true(self, params: JSON) -> Any:
        return True

    def _m_get_updates_marker(self, params: JSON) -> Any:
        raise AssertionError("getUpdates is served by the async _get_updates")

    def _m_get_me(self, params: JSON) -> Any:
        return self.bot.get_me()

    async def _get_updates(self, params: JSON) -> list[JSON]:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._webhook.url:
                raise ApiError(409, _CONFLICT_WEBHOOK)
            offset = _opt_int(params, "offset") or 0
            limit = min(max(_opt_int(params, "limit") or 100, 1), 100)
            timeout = max(_opt_int(params, "timeout") or 0, 0)
            allowed = params.get("allowed_updates")
            if allowed is not None:
                if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
                    raise ApiError(400, "Bad Request: can't parse allowed updates JSON object")
                self._allowed_updates = frozenset(allowed) if allowed else None
            self._poll_generation += 1
            generation = self._poll_generation
            if offset > 0:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            elif offset < 0:
                self._updates = self._updates[offset:]
        self._wake_pollers()  # terminates an older pending getUpdates with 409
        deadline = loop.time() + timeout
        while True:
            event = self._updates_event
            with self._lock:
                if generation != self._poll_generation:
                    raise ApiError(409, _CONFLICT_OTHER_POLL)
                batch = self._deliverable(limit)
            if batch or self._closing or event is None:
                return batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def _deliverable(self, limit: int) -> list[JSON]:
        allowed = self._allowed_updates
        if allowed is None:
            self._updates = [u for u in self._updates if _update_type(u) not in _NOT_DEFAULT_UPDATE_TYPES]
        else:
            self._updates = [u for u in self._updates if _update_type(u) in allowed]
        return copy.deepcopy(self._updates[:limit])

    def _m_send_message(self, params: JSON) -> Any:
        chat = self._resolve_chat(params.get("chat_id"))
        text = params.get("text")
        if not isinstance(text, str) or not text:
            raise ApiError(400, "Bad Request: message text is empty")
        plain, entities = self._format_text(text, params.get("parse_mode"), params.get("entities"))
        if not plain.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(plain) > MAX_MESSAGE_LENGTH:
            raise ApiError(400, "Bad Request: message is too long")
        markup = _validate_reply_markup(params.get("reply_markup"))
        message = self._outgoing_message(chat, params)
        message["text"] = plain
        if entities:
            message["entities"] = entities
        if markup is not None and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        self._store_message(message)
        self._sent.append(
            SentMessage(
                chat_id=params["chat_id"],
                message_id=message["message_id"],
                text=text,
                parse_mode=_opt_str(params, "parse_mode"),
                reply_markup=markup,
                link_preview_options=params.get("link_preview_options"),
                disable_web_page_preview=params.get("disable_web_page_preview"),
                reply_parameters=params.get("reply_parameters"),
                message_thread_id=_opt_int(params, "message_thread_id"),
                params=params,
                message=copy.deepcopy(message),
            )
        )
        self._cond.notify_all()
        return message

    def _m_send_document(self, params: JSON) -> Any:
        chat = self._resolve_chat(params.get("chat_id"))
        document = params.get("document")
        if isinstance(document, UploadedFile):
            if not document.content:
                raise ApiError(400, "Bad Request: file must be non-empty")
            record = self.register_file(
                document.content,
                file_name=document.filename,
                mime_type=document.content_type,
            )
        elif isinstance(document, str) and document in self._files:
            record = self._files[document]
        elif not document:
            raise ApiError(400, "Bad Request: there is no document in the request")
        else:
            raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        markup = _validate_reply_markup(params.get("reply_markup"))
        message = self._outgoing_message(chat, params)
        message["document"] = {
            "file_id": record.file_id,
            "file_unique_id": record.file_unique_id,
            "file_size": record.file_size,
        }
        if record.file_name:
            message["document"]["file_name"] = record.file_name
        if record.mime_type:
            message["document"]["mime_type"] = record.mime_type
        caption = params.get("caption")
        if isinstance(caption, str) and caption:
            plain, entities = self._format_text(
                caption, params.get("parse_mode"), params.get("caption_entities")
            )
            if len(plain) > MAX_CAPTION_LENGTH:
                raise ApiError(400, "Bad Request: message caption is too long")
            message["caption"] = plain
            if entities:
                message["caption_entities"] = entities
        if markup is not None and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        self._store_message(message)
        return message

    def _m_send_chat_action(self, params: JSON) -> Any:
        self._resolve_chat(params.get("chat_id"))
        action = params.get("action")
        if not action:
            raise ApiError(400, "Bad Request: action is empty")
        if action not in _CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    def _command_target(self, params: JSON) -> tuple[str, str]:
        scope = params.get("scope")
        if scope is not None and (not isinstance(scope, dict) or scope.get("type") not in _COMMAND_SCOPES):
            raise ApiError(400, "Bad Request: can't parse bot command scope JSON object")
        language = params.get("language_code") or ""
        if not isinstance(language, str) or (language and not re.fullmatch(r"[a-z]{2}", language)):
            raise ApiError(400, "Bad Request: invalid language code specified")
        return self._scope_key(scope), language

    def _m_set_my_commands(self, params: JSON) -> Any:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: can't parse bot commands JSON object")
        if len(commands) > 100:
            raise ApiError(400, "Bad Request: too many commands specified")
        for command in commands:
            if not isinstance(command, dict):
                raise ApiError(400, "Bad Request: can't parse BotCommand JSON object")
            name = command.get("command")
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            description = command.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self._commands[self._command_target(params)] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    def _m_get_my_commands(self, params: JSON) -> Any:
        return copy.deepcopy(self._commands.get(self._command_target(params), []))

    def _m_delete_my_commands(self, params: JSON) -> Any:
        self._commands.pop(self._command_target(params), None)
        return True

    def _m_set_webhook(self, params: JSON) -> Any:
        url = params.get("url")
        if url is None:
            raise ApiError(400, 'Bad Request: parameter "url" is required')
        url = str(url)
        drop = bool(params.get("drop_pending_updates"))
        if not url:
            return self._m_delete_webhook(params)
        if not url.lower().startswith("https://"):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        port_match = re.match(r"https://[^/:]+(?::(\d+))?", url, re.IGNORECASE)
        port = int(port_match.group(1)) if port_match and port_match.group(1) else 443
        if port not in {80, 88, 443, 8443}:
            raise ApiError(
                400,
                "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443",
            )
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        allowed = params.get("allowed_updates")
        if allowed is not None:
            if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
                raise ApiError(400, "Bad Request: can't parse allowed updates JSON object")
            self._allowed_updates = frozenset(allowed) if allowed else None
        if drop:
            self._updates.clear()
        self._webhook = WebhookConfig(
            url=url,
            secret_token=secret,
            max_connections=_opt_int(params, "max_connections"),
            allowed_updates=list(allowed) if allowed is not None else None,
            ip_address=_opt_str(params, "ip_address"),
            drop_pending_updates=drop,
        )
        self._wake_pollers_threadsafe()
        return _Described(True, "Webhook was set")

    def _m_delete_webhook(self, params: JSON) -> Any:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        had_webhook = bool(self._webhook.url)
        self._webhook = WebhookConfig()
        return _Described(True, "Webhook was deleted" if had_webhook else "Webhook is already deleted")

    def _m_get_webhook_info(self, params: JSON) -> Any:
        info: JSON = {
            "url": self._webhook.url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self._webhook.url:
            info["max_connections"] = self._webhook.max_connections or 40
            if self._webhook.allowed_updates is not None:
                info["allowed_updates"] = list(self._webhook.allowed_updates)
            if self._webhook.ip_address:
                info["ip_address"] = self._webhook.ip_address
        return info

    def _m_get_file(self, params: JSON) -> Any:
        file_id = params.get("file_id")
        if not file_id:
            raise ApiError(400, "Bad Request: file_id not specified")
        record = self._files.get(str(file_id))
        if record is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if record.file_size > MAX_DOWNLOAD_BYTES:
            raise ApiError(400, "Bad Request: file is too big")
        return {
            "file_id": record.file_id,
            "file_unique_id": record.file_unique_id,
            "file_size": record.file_size,
            "file_path": record.file_path,
        }

    def _m_answer_callback_query(self, params: JSON) -> Any:
        query_id = params.get("callback_query_id")
        if not query_id:
            raise ApiError(400, "Bad Request: callback_query_id is empty")
        if self._open_callback_queries.pop(str(query_id), None) is None:
            raise ApiError(400, _QUERY_TOO_OLD)
        text = params.get("text")
        if isinstance(text, str) and len(text) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        return True

    def _editable_message(self, params: JSON) -> tuple[tuple[str, int], JSON]:
        if params.get("inline_message_id"):
            raise ApiError(400, "Bad Request: MESSAGE_ID_INVALID")
        chat = self._resolve_chat(params.get("chat_id"))
        message_id = _opt_int(params, "message_id")
        if message_id is None:
            raise ApiError(400, "Bad Request: message identifier is not specified")
        key = (_chat_key(chat["id"]), message_id)
        message = self._messages.get(key)
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if message.get("from", {}).get("id") != self.bot.id:
            raise ApiError(400, "Bad Request: message can't be edited")
        return key, message

    def _m_edit_message_text(self, params: JSON) -> Any:
        key, message = self._editable_message(params)
        text = params.get("text")
        if not isinstance(text, str) or not text:
            raise ApiError(400, "Bad Request: text must be non-empty")
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        plain, entities = self._format_text(text, params.get("parse_mode"), params.get("entities"))
        if not plain.strip():
            raise ApiError(400, "Bad Request: text must be non-empty")
        if len(plain) > MAX_MESSAGE_LENGTH:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        markup = _validate_reply_markup(params.get("reply_markup"))
        inline = markup if markup is not None and "inline_keyboard" in markup else None
        if (
            message.get("text") == plain
            and message.get("entities", []) == entities
            and message.get("reply_markup") == inline
        ):
            raise ApiError(400, _NOT_MODIFIED)
        edited = copy.deepcopy(message)
        edited["text"] = plain
        edited.pop("entities", None)
        if entities:
            edited["entities"] = entities
        edited.pop("reply_markup", None)
        if inline is not None:
            edited["reply_markup"] = inline
        edited["edit_date"] = int(time.time())
        self._messages[key] = edited
        return copy.deepcopy(edited)

    def _m_edit_message_reply_markup(self, params: JSON) -> Any:
        key, message = self._editable_message(params)
        markup = _validate_reply_markup(params.get("reply_markup"))
        if markup is not None and "inline_keyboard" not in markup:
            raise ApiError(400, "Bad Request: REPLY_MARKUP_INVALID")
        if message.get("reply_markup") == markup:
            raise ApiError(400, _NOT_MODIFIED)
        edited = copy.deepcopy(message)
        edited.pop("reply_markup", None)
        if markup is not None and markup.get("inline_keyboard"):
            edited["reply_markup"] = markup
        edited["edit_date"] = int(time.time())
        self._messages[key] = edited
        return copy.deepcopy(edited)

    def _m_delete_message(self, params: JSON) -> Any:
        chat = self._resolve_chat(params.get("chat_id"))
        message_id = _opt_int(params, "message_id")
        if message_id is None:
            raise ApiError(400, "Bad Request: message identifier is not specified")
        if self._messages.pop((_chat_key(chat["id"]), message_id), None) is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        return True

    def _bot_text_setter(self, field: str) -> Callable[[JSON], Any]:
        def handler(params: JSON) -> Any:
            language = str(params.get("language_code") or "")
            value = params.get(field)
            if value:
                self._bot_texts[(field, language)] = str(value)
            else:
                self._bot_texts.pop((field, language), None)
            return True

        return handler

    def _bot_text_getter(self, field: str) -> Callable[[JSON], Any]:
        def handler(params: JSON) -> Any:
            language = str(params.get("language_code") or "")
            default = self.bot.first_name if field == "name" else ""
            return {field: self._bot_texts.get((field, language), default)}

        return handler


# --------------------------------------------------------------------------------------
# PTB convenience
# --------------------------------------------------------------------------------------


def application_builder(
    peer: BotApiPeer, *, poll_timeout: float = 1.0
) -> ApplicationBuilder[Any, Any, Any, Any, Any, Any]:
    """A PTB ``ApplicationBuilder`` wired to ``peer`` with short timeouts.

    ``poll_timeout`` is the read timeout for ``getUpdates`` on top of its
    long-poll ``timeout``; pass the same long-poll timeout to
    ``start_polling(timeout=...)``.  The caller may chain more settings.
    """
    from telegram.ext import ApplicationBuilder

    return (
        ApplicationBuilder()
        .token(peer.token)
        .base_url(peer.base_url)
        .base_file_url(peer.base_file_url)
        .connect_timeout(5.0)
        .read_timeout(5.0)
        .write_timeout(5.0)
        .pool_timeout(5.0)
        .get_updates_connect_timeout(5.0)
        .get_updates_read_timeout(poll_timeout + 5.0)
        .get_updates_write_timeout(5.0)
        .get_updates_pool_timeout(5.0)
    )


def iter_entity_texts(text: str, entities: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(type, covered text)`` for each entity, resolving UTF-16 offsets."""
    encoded = text.encode("utf-16-le")
    return [
        (
            str(e["type"]),
            encoded[2 * e["offset"] : 2 * (e["offset"] + e["length"])].decode("utf-16-le"),
        )
        for e in entities
    ]

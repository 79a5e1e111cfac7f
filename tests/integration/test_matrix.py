"""The Matrix adapter against a real Synapse, with matrix-nio clients as journalists.

One Synapse and one indexed case (the real ``build_services`` with the
default embedder, on a copy of the demo articles) serve the whole module.
Each test starts the bot, talks to it as a person would, reads what it
sent, and stops it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    Event,
    LoginResponse,
    MegolmEvent,
    RoomCreateResponse,
    RoomSendResponse,
    SyncResponse,
    UploadResponse,
)
from pydantic import SecretStr

from bot.app import Services, build_adapter, build_services
from bot.matrix.adapter import MatrixAdapter, txn_id
from bot.matrix.render import ALLOWED_TAGS
from bot.matrix.state import MatrixState
from bot.settings import DEMO_ARTICLES, ChatSettings, MatrixSettings, Settings
from tests.integration.synapse_harness import SynapseServer, running_synapse

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0
QUESTION = "Welche Behörde hat Mitto ins Visier genommen?"
CASE_URLS = ("netzwoche.ch", "heise.de")
BOT_PASSWORD = "bot-password"
NEW_ARTICLE_URL = "https://www.example-zeitung.ch/mitto-frachter-seeschwalbe-orion"
NEW_ARTICLE = f"""---
title: "Mitto-Server auf dem Frachter Seeschwalbe Orion"
outlet: "Example-Zeitung"
url: "{NEW_ARTICLE_URL}"
published: "2022-03-01"
language: "de"
---
Mitto-Server auf dem Frachter Seeschwalbe Orion

Die Ermittler fanden die verschwundenen Server der Mitto AG an Bord des Frachtschiffs Seeschwalbe Orion,
das seit Wochen im Hafen von Genua vor Anker lag.

Der Kapitän der Seeschwalbe Orion sagte, er habe von der Fracht nichts gewusst.
"""


@dataclass
class Bot:
    """What the tests need to know about the bot account."""

    user_id: str
    settings: MatrixSettings
    fatal: list[str] = field(default_factory=list)


@dataclass
class World:
    synapse: SynapseServer
    services: Services
    bot: Bot
    journalist: str  # allowed to invite, not an admin
    admin: str  # allowed to invite, admin
    stranger: str  # neither


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("matrix")
    articles = root / "articles"
    shutil.copytree(DEMO_ARTICLES, articles)
    with running_synapse() as synapse:
        bot_id, _ = synapse.register_user("casebot", BOT_PASSWORD)
        journalist, _ = synapse.register_user("journalist", "pw")
        admin, _ = synapse.register_user("editor", "pw")
        stranger, _ = synapse.register_user("stranger", "pw")
        matrix = MatrixSettings(
            homeserver=synapse.base_url, user_id=bot_id, password=SecretStr(BOT_PASSWORD),
            allowed_users=[journalist, admin], admins=[admin],
            pickle_key=SecretStr("test-only-pickle-key"), sync_timeout_seconds=5,
        )
        settings = Settings(
            data_dir=root / "var", articles_dir=articles, matrix=matrix,
            chat=ChatSettings(rate_limit_count=1000),
        )
        services = build_services(settings)
        services.case.ensure_indexed()
        services.case.warm_up()
        yield World(synapse, services, Bot(bot_id, matrix), journalist, admin, stranger)


# --- a journalist's client -------------------------------------------------------


class Person:
    """A matrix-nio client that remembers every timeline event it synced."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.events: dict[str, list[Event]] = {}

    @classmethod
    async def login(cls, synapse: SynapseServer, user_id: str, store: Path) -> Person:
        store.mkdir(parents=True, exist_ok=True)
        client = AsyncClient(synapse.base_url, user_id, store_path=str(store),
                             config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False))
        response = await client.login("pw", device_name="journalist")
        assert isinstance(response, LoginResponse), response
        if client.should_upload_keys:
            await client.keys_upload()
        person = cls(client)
        await person.sync()
        return person

    async def sync(self) -> None:
        response = await self.client.sync(timeout=500)
        assert isinstance(response, SyncResponse), response
        for room_id, info in response.rooms.join.items():
            self.events.setdefault(room_id, []).extend(info.timeline.events)
        if self.client.should_query_keys:
            await self.client.keys_query()
        if self.client.should_claim_keys:
            await self.client.keys_claim(self.client.get_users_for_key_claiming())

    async def until(self, done: Callable[[], Any], what: str, deadline: float = DEADLINE_S) -> Any:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            await self.sync()
            result = done()
            if result:
                return result
        raise AssertionError(f"{self.client.user_id}: timed out waiting for {what}")

    async def create_room(self, invite: list[str], encrypted: bool = False) -> str:
        state = [{"type": "m.room.encryption", "state_key": "",
                  "content": {"algorithm": "m.megolm.v1.aes-sha2"}}] if encrypted else []
        created = await self.client.room_create(name=f"room-{uuid.uuid4().hex[:6]}", invite=invite,
                                                initial_state=state)
        assert isinstance(created, RoomCreateResponse), created
        return created.room_id

    def membership(self, room_id: str, user_id: str) -> str | None:
        room = self.client.rooms.get(room_id)
        if room is None:
            return None
        if user_id in room.invited_users:  # nio lists invited users in room.users too
            return "invite"
        if user_id in room.users:
            return "join"
        return "leave"

    async def send(self, room_id: str, content: dict[str, Any]) -> str:
        response = await self.client.room_send(room_id, "m.room.message", content,
                                               ignore_unverified_devices=True)
        assert isinstance(response, RoomSendResponse), response
        return str(response.event_id)

    async def say(self, room_id: str, body: str, mention: str | None = None) -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": body}
        if mention is not None:
            localpart = mention[1:].split(":", 1)[0]
            content.update(
                body=f"{localpart}: {body}", format="org.matrix.custom.html",
                formatted_body=f'<a href="https://matrix.to/#/{mention}">{localpart}</a>: {body}',
            )
            content["m.mentions"] = {"user_ids": [mention]}
        return await self.send(room_id, content)

    def replies_to(self, room_id: str, event_id: str, sender: str) -> list[Event]:
        """Messages from ``sender`` that reply to ``event_id`` (in a thread or not)."""
        found = []
        for event in self.events.get(room_id, []):
            content = event.source.get("content", {})
            relation = content.get("m.relates_to", {})
            if event.sender == sender and relation.get("m.in_reply_to", {}).get("event_id") == event_id:
                found.append(event)
        return found

    async def reply(self, room_id: str, event_id: str, sender: str) -> Event:
        replies = await self.until(lambda: self.replies_to(room_id, event_id, sender), f"a reply to {event_id}")
        return replies[0]

    async def close(self) -> None:
        await self.client.close()


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.hrefs.extend(v or "" for k, v in attrs if tag == "a" and k == "href")


def _links(content: dict[str, Any]) -> _Links:
    parser = _Links()
    parser.feed(content["formatted_body"])
    return parser


def _new_bot(world: World) -> MatrixAdapter:
    s = world.services
    return MatrixAdapter(s.conversation, world.bot.settings, s.feedback, s.prompts, s.settings.data_dir,
                         on_fatal=world.bot.fatal.append)


async def _with_bot(world: World, scenario: Callable[[MatrixAdapter], Any]) -> None:
    bot = _new_bot(world)
    await bot.start()
    try:
        await scenario(bot)
    finally:
        await bot.stop()
    assert world.bot.fatal == []


async def _joined(person: Person, room_id: str, user_id: str) -> None:
    await person.until(lambda: person.membership(room_id, user_id) == "join", f"{user_id} to join")


def _assert_cited_answer(event: Event, question_id: str, urls: tuple[str, ...]) -> list[str]:
    content = event.source["content"]
    assert content["msgtype"] == "m.notice"
    assert content["format"] == "org.matrix.custom.html"
    relation = content["m.relates_to"]
    assert relation["rel_type"] == "m.thread"
    assert relation["event_id"] == question_id  # a new thread rooted at the question
    links = _links(content)
    assert links.tags <= ALLOWED_TAGS
    cited = [h for h in links.hrefs if any(u in h for u in urls)]
    assert cited, (content["body"], links.hrefs)
    assert "[1]" in content["body"]
    return cited


# --- tests -----------------------------------------------------------------------


def test_build_adapter_wires_matrix(world: World) -> None:
    reasons: list[str] = []
    adapter = build_adapter("matrix", world.services, reasons.append)
    assert isinstance(adapter, MatrixAdapter)
    assert adapter.name == "matrix"


def test_missing_pickle_key_fails_with_one_clear_message(world: World) -> None:
    s = world.services
    settings = world.bot.settings.model_copy(update={"pickle_key": SecretStr("")})
    adapter = MatrixAdapter(s.conversation, settings, s.feedback, s.prompts, s.settings.data_dir,
                            on_fatal=world.bot.fatal.append)
    with pytest.raises(Exception, match="CASEBOT_MATRIX__PICKLE_KEY"):
        asyncio.run(adapter.start())
    asyncio.run(adapter.stop())


def test_group_room_mention_gets_threaded_cited_answer_chatter_nothing(world: World, tmp_path: Path) -> None:
    """Invite and join; a mention is answered in a thread with linked citations; chatter is not."""

    async def scenario(bot: MatrixAdapter) -> None:
        journalist = await Person.login(world.synapse, world.journalist, tmp_path / "journalist")
        stranger = await Person.login(world.synapse, world.stranger, tmp_path / "stranger")
        try:
            room = await journalist.create_room(invite=[bot.user_id, world.stranger])
            await _joined(journalist, room, bot.user_id)
            chatter = await journalist.say(room, "Guten Morgen zusammen, wer holt Kaffee?")
            other_bot = await journalist.send(room, {"msgtype": "m.notice", "body": f"{QUESTION} casebot"})
            question = await journalist.say(room, QUESTION, mention=bot.user_id)
            answer = await journalist.reply(room, question, bot.user_id)
            _assert_cited_answer(answer, question, CASE_URLS)

            # A reply to the bot's answer (no mention) is a follow-up in the answer's thread.
            follow_up = await journalist.send(room, {"msgtype": "m.text", "body": "Und was sagte Mitto dazu?",
                                                     "m.relates_to": {"m.in_reply_to": {"event_id": answer.event_id}}})
            second = await journalist.reply(room, follow_up, bot.user_id)
            assert second.source["content"]["m.relates_to"]["event_id"] == question  # same thread

            sources_id = await journalist.say(room, "!sources")
            sources = await journalist.reply(room, sources_id, bot.user_id)
            assert any(u in h for h in _links(sources.source["content"]).hrefs for u in CASE_URLS)

            help_id = await journalist.say(room, "!help")
            help_reply = await journalist.reply(room, help_id, bot.user_id)
            assert "!ask" in help_reply.source["content"]["body"]
            assert "/ask" not in help_reply.source["content"]["body"]

            # 👍 on the answer is stored as feedback.
            await journalist.client.room_send(room, "m.reaction", {"m.relates_to": {
                "rel_type": "m.annotation", "event_id": answer.event_id, "key": "👍"}})
            await journalist.until(lambda: any(e.answer_ref == answer.event_id
                                               for e in world.services.feedback.entries()), "feedback")
            entry = next(e for e in world.services.feedback.entries() if e.answer_ref == answer.event_id)
            assert (entry.platform, entry.rating, entry.question) == ("matrix", 1, QUESTION)

            # Nothing answered the chatter or the other bot's notice.
            assert journalist.replies_to(room, chatter, bot.user_id) == []
            assert journalist.replies_to(room, other_bot, bot.user_id) == []

            # An invite from someone not allowed is declined.
            foreign = await stranger.create_room(invite=[bot.user_id])
            await stranger.until(lambda: stranger.membership(foreign, bot.user_id) == "leave", "decline")
        finally:
            await journalist.close()
            await stranger.close()

    asyncio.run(_with_bot(world, scenario))


def test_encrypted_room_gets_decryptable_answer(world: World, tmp_path: Path) -> None:
    """In an encrypted direct room every message is a question; the answer decrypts."""

    async def scenario(bot: MatrixAdapter) -> None:
        journalist = await Person.login(world.synapse, world.journalist, tmp_path / "journalist")
        try:
            room = await journalist.create_room(invite=[bot.user_id], encrypted=True)
            await _joined(journalist, room, bot.user_id)
            await journalist.until(lambda: bot.user_id in journalist.client.device_store.users, "bot's keys")
            question = await journalist.say(room, QUESTION)
            answer = await journalist.reply(room, question, bot.user_id)
            assert not isinstance(answer, MegolmEvent)
            assert answer.decrypted
            _assert_cited_answer(answer, question, CASE_URLS)
            # On the wire the answer is encrypted, its thread relation is not (the server and
            # clients thread by it).
            raw = world.synapse.api_request(
                "GET", f"/_matrix/client/v3/rooms/{quote(room, safe='')}/event/{quote(answer.event_id, safe='')}",
                access_token=journalist.client.access_token)
            assert raw["type"] == "m.room.encrypted"
            assert "ciphertext" in raw["content"]
            assert raw["content"]["m.relates_to"]["rel_type"] == "m.thread"
            assert raw["content"]["m.relates_to"]["event_id"] == question
        finally:
            await journalist.close()

    asyncio.run(_with_bot(world, scenario))


def test_admin_commands_and_article_upload(world: World, tmp_path: Path) -> None:
    """A journalist's !reindex is refused; an admin's uploaded article is indexed and then cited."""

    async def scenario(bot: MatrixAdapter) -> None:
        journalist = await Person.login(world.synapse, world.journalist, tmp_path / "journalist")
        admin = await Person.login(world.synapse, world.admin, tmp_path / "admin")
        try:
            room = await admin.create_room(invite=[bot.user_id, world.journalist])
            await _joined(admin, room, bot.user_id)
            await journalist.client.join(room)
            await _joined(journalist, room, world.journalist)

            refused_id = await journalist.say(room, "!reindex")
            refused = await journalist.reply(room, refused_id, bot.user_id)
            admin_only = world.services.prompts.text("de", "admin_only")
            assert refused.source["content"]["body"] == admin_only

            data = NEW_ARTICLE.encode()
            uploaded, _ = await admin.client.upload(io.BytesIO(data), content_type="text/markdown",
                                                    filename="seeschwalbe.md", filesize=len(data))
            assert isinstance(uploaded, UploadResponse), uploaded
            file_id = await admin.send(room, {"msgtype": "m.file", "body": "seeschwalbe.md",
                                              "filename": "seeschwalbe.md", "url": uploaded.content_uri,
                                              "info": {"mimetype": "text/markdown", "size": len(data)}})
            result = await admin.reply(room, file_id, bot.user_id)
            assert "seeschwalbe.md" in result.source["content"]["body"], result.source["content"]["body"]
            assert (world.services.settings.articles_dir / "seeschwalbe.md").exists()

            question = await admin.say(room, "!ask Auf welchem Schiff fanden die Ermittler die Server von Mitto?")
            answer = await admin.reply(room, question, bot.user_id)
            cited = _assert_cited_answer(answer, question, (NEW_ARTICLE_URL,))
            assert cited[0] == NEW_ARTICLE_URL

            stats_id = await admin.say(room, "!stats")
            stats = await admin.reply(room, stats_id, bot.user_id)
            assert "Index: 3 Artikel" in stats.source["content"]["body"]  # two demo articles plus the upload
        finally:
            await journalist.close()
            await admin.close()

    asyncio.run(_with_bot(world, scenario))


def test_restart_answers_nothing_twice(world: World, tmp_path: Path) -> None:
    """After a restart: same device, no second answer, nothing sent while it was down is answered."""

    async def scenario() -> None:
        journalist = await Person.login(world.synapse, world.journalist, tmp_path / "journalist")
        try:
            first = _new_bot(world)
            await first.start()
            try:
                device = first.device_id
                room = await journalist.create_room(invite=[first.user_id])
                await _joined(journalist, room, first.user_id)
                before = await journalist.say(room, QUESTION)
                answered = await journalist.reply(room, before, first.user_id)
                # A retried send of that reply (same transaction id) is not posted again.
                retried = await first._room_send(room, {"msgtype": "m.notice", "body": "retry"},
                                                 txn_id(before, "reply"))
                assert isinstance(retried, RoomSendResponse)
                assert retried.event_id == answered.event_id
            finally:
                await first.stop()

            while_down = await journalist.say(room, "Wer hat Twitter verlassen?")
            second = _new_bot(world)
            await second.start()
            try:
                assert second.device_id == device
                after = await journalist.say(room, QUESTION)
                await journalist.reply(room, after, second.user_id)
                await journalist.sync()
                assert len(journalist.replies_to(room, before, second.user_id)) == 1
                assert journalist.replies_to(room, while_down, second.user_id) == []
                assert len(journalist.replies_to(room, after, second.user_id)) == 1
            finally:
                await second.stop()
        finally:
            await journalist.close()
        assert world.bot.fatal == []

    asyncio.run(scenario())


def test_rejected_access_token_fails_start_clearly(world: World, tmp_path: Path) -> None:
    s = world.services
    settings = world.bot.settings.model_copy(update={"access_token": SecretStr("not-a-token")})
    adapter = MatrixAdapter(s.conversation, settings, s.feedback, s.prompts, tmp_path,
                            on_fatal=world.bot.fatal.append)
    with pytest.raises(Exception, match="CASEBOT_MATRIX__ACCESS_TOKEN"):
        asyncio.run(adapter.start())
    asyncio.run(adapter.stop())


def test_token_revoked_while_running_stops_the_bot(world: World, tmp_path: Path) -> None:
    """A logged-out device makes the sync loop report a fatal error naming the setting."""
    user_id, _ = world.synapse.register_user("casebot-revoked", BOT_PASSWORD)
    settings = world.bot.settings.model_copy(update={"user_id": user_id})
    fatal: list[str] = []
    s = world.services
    adapter = MatrixAdapter(s.conversation, settings, s.feedback, s.prompts, tmp_path, on_fatal=fatal.append)

    async def scenario() -> None:
        await adapter.start()
        try:
            session = MatrixState(tmp_path / "matrix" / "state.sqlite3").session()
            assert session is not None and session.user_id == user_id
            assert session.access_token not in repr(session)
            world.synapse.api_request("POST", "/_matrix/client/v3/logout", {},
                                      access_token=session.access_token)
            end = time.monotonic() + DEADLINE_S
            while not fatal and time.monotonic() < end:
                await asyncio.sleep(0.2)
        finally:
            await adapter.stop()

    asyncio.run(scenario())
    assert len(fatal) == 1
    assert "CASEBOT_MATRIX__ACCESS_TOKEN" in fatal[0]


def test_rate_limited_replies_are_retried_and_sent_once(world: World, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """With a strict message rate limit every question still gets exactly one reply."""
    strict = {"rc_message": {"per_second": 1, "burst_count": 1}}
    with running_synapse(config_overrides=strict) as synapse:
        bot_id, _ = synapse.register_user("casebot", BOT_PASSWORD)
        journalist_id, _ = synapse.register_user("journalist", "pw")
        _, admin_token = synapse.register_user("server-admin", "pw", admin=True)
        # The journalist is exempt, so its questions arrive together and the bot's replies collide.
        synapse.api_request("POST", f"/_synapse/admin/v1/users/{journalist_id}/override_ratelimit",
                            {"messages_per_second": 0, "burst_count": 0}, access_token=admin_token)
        settings = world.bot.settings.model_copy(update={
            "homeserver": synapse.base_url, "user_id": bot_id, "allowed_users": [journalist_id]})
        s = world.services
        adapter = MatrixAdapter(s.conversation, settings, s.feedback, s.prompts, tmp_path / "bot",
                                on_fatal=world.bot.fatal.append)

        async def scenario() -> None:
            journalist = await Person.login(synapse, journalist_id, tmp_path / "journalist")
            await adapter.start()
            try:
                room = await journalist.create_room(invite=[bot_id])
                await _joined(journalist, room, bot_id)
                questions = [await journalist.say(room, text) for text in ("!help", "!sources", "!about")]
                for question in questions:
                    await journalist.reply(room, question, bot_id)
                await journalist.sync()
                for question in questions:
                    assert len(journalist.replies_to(room, question, bot_id)) == 1
            finally:
                await adapter.stop()
                await journalist.close()

        with caplog.at_level("WARNING", logger="bot.matrix.adapter"):
            asyncio.run(scenario())
    assert any("rate limited" in r.getMessage() for r in caplog.records)
    assert world.bot.fatal == []


def test_run_all_serves_telegram_and_matrix_in_one_process(world: World, tmp_path: Path) -> None:
    """`casebot run all`: both adapters on one event loop, one conversation, one orderly stop."""
    from bot.app import Shutdown, run_adapters
    from bot.settings import TelegramSettings
    from tests.integration.botapi_peer import BotApiPeer

    async def scenario() -> None:
        async with BotApiPeer() as peer:
            telegram = TelegramSettings(token=SecretStr(peer.token), api_base_url=peer.base_url)
            settings = world.services.settings.model_copy(update={"telegram": telegram})
            services = dataclasses.replace(world.services, settings=settings)
            shutdown = Shutdown()
            runner = asyncio.create_task(run_adapters(services, ["telegram", "matrix"], shutdown))
            journalist = await Person.login(world.synapse, world.journalist, tmp_path / "journalist")
            try:
                mark = len(peer.calls)
                peer.private_text(4242, QUESTION)
                sent = await peer.wait_for_async(
                    lambda c: c.method == "sendMessage" and c.params.get("chat_id") == 4242, since=mark,
                    timeout=60)
                assert "EDÖB" in str(sent.params["text"])

                room = await journalist.create_room(invite=[world.bot.user_id])
                await _joined(journalist, room, world.bot.user_id)
                question = await journalist.say(room, QUESTION)
                answer = await journalist.reply(room, question, world.bot.user_id)
                _assert_cited_answer(answer, question, CASE_URLS)
            finally:
                await journalist.close()
                shutdown.event.set()
                await asyncio.wait_for(runner, 60)
            assert shutdown.reason == ""

    asyncio.run(scenario())

"""The bot as Element users meet it: a journalist on matrix-js-sdk with the Rust crypto, against Synapse.

The journalist runs Element's own client stack (``tests/integration/element``,
one Node process for the module) with "exclude insecure devices" switched
on: it neither shares room keys with nor decrypts messages from devices
their owner has not signed. So every answer it reads here proves that the
bot's device is cross-signed, that the bot got the room key (it answered
the question it could only read decrypted) and that the answer's shield
is not red. Cross-signing itself is checked on the server (``/keys/query``).
"""

from __future__ import annotations

import asyncio
import logging
import stat
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.matrix.adapter import MatrixAdapter
from bot.matrix.crosssigning import KeyFile, public_key
from bot.matrix.state import MatrixState
from bot.matrix.verification import CANCEL_CODE
from tests.integration import test_matrix
from tests.integration.element import ElementJournalists, node_available
from tests.integration.synapse_harness import SynapseServer
from tests.integration.test_matrix import BOT_PASSWORD, CASE_URLS, QUESTION, World

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not node_available(), reason="Node.js and npm are needed for the Element journalist"),
]

JOURNALIST_PASSWORD = "pw"  # as registered by test_matrix.world
QUIET_S = 6.0  # how long "no answer" is waited for; the bot answers a question in well under that


# The same world as the nio tests (its own Synapse and index for this module): bot, journalist, editor.
world = test_matrix.world


def _bot(world: World, data_dir: Path | None = None, **changes: Any) -> MatrixAdapter:
    s = world.services
    settings = world.bot.settings.model_copy(update=changes)
    return MatrixAdapter(s.conversation, settings, s.feedback, s.prompts, data_dir or s.settings.data_dir,
                         on_fatal=world.bot.fatal.append)


def _keys(synapse: SynapseServer, user_id: str) -> dict[str, Any]:
    _, token = synapse.register_user(f"observer-{uuid.uuid4().hex[:8]}", "pw")
    return synapse.api_request("POST", "/_matrix/client/v3/keys/query", {"device_keys": {user_id: []}},
                               access_token=token)


def _master(keys: dict[str, Any], user_id: str) -> str | None:
    master = keys.get("master_keys", {}).get(user_id)
    return next(iter(master["keys"].values())) if master else None


def _device_signed_by_ssk(keys: dict[str, Any], user_id: str, device_id: str) -> bool:
    ssk = next(iter(keys["self_signing_keys"][user_id]["keys"]))
    return ssk in keys["device_keys"][user_id][device_id].get("signatures", {}).get(user_id, {})


def _run(world: World, tmp_path: Path,
         scenario: Callable[[ElementJournalists], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        async with ElementJournalists(tmp_path / "journalist.log") as element:
            await scenario(element)

    asyncio.run(main())
    assert world.bot.fatal == []


def _address(text: str) -> dict[str, Any]:
    """What Element's composer sends for ``casebot: text`` typed without picking a pill."""
    return {"msgtype": "m.text", "body": f"casebot: {text}", "m.mentions": {}}


def _assert_trusted_answer(reply: dict[str, Any]) -> None:
    assert reply["encrypted"], reply
    assert not reply["decryptionFailure"], reply
    assert reply["shieldColour"] == "NONE", reply  # not red, and not even grey
    body = reply["content"]["body"]
    assert any(u in body for u in CASE_URLS), body  # the bot read the question and cited the case


def test_first_start_cross_signs_the_device_and_restart_reuses_the_keys(world: World, tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Keys created, published, device signed; a restart and a new device reuse them."""
    synapse, user = world.synapse, world.bot.user_id
    assert _master(_keys(synapse, user), user) is None

    async def scenario(element: ElementJournalists) -> None:
        journalist = await element.call("login", baseUrl=synapse.base_url, userId=world.journalist,
                                        password=JOURNALIST_PASSWORD)
        bot = _bot(world)
        with caplog.at_level(logging.INFO, logger="bot.matrix"):
            await bot.start()
        try:
            keys = _keys(synapse, user)
            master = _master(keys, user)
            assert master is not None
            trust = [r.getMessage() for r in caplog.records if "cross-signing is" in r.getMessage()]
            assert trust == [f"matrix: cross-signing is set up: device signed by the account's master key {master}"]
            assert _device_signed_by_ssk(keys, user, bot.device_id)
            # The journalist's Rust crypto, sharing an encrypted room with the bot, sees the device signed.
            room = (await element.call("createRoom", userId=journalist["userId"], invite=[user],
                                       encrypted=True))["roomId"]
            await element.call("waitJoin", userId=journalist["userId"], roomId=room, member=user)
            status = await element.call("deviceStatus", userId=journalist["userId"], otherUser=user,
                                        deviceId=bot.device_id)
            assert status == {"known": True, "signedByOwner": True, "crossSigningVerified": False}, status
            first_device = bot.device_id
        finally:
            await bot.stop()
        key_file = world.services.settings.data_dir / "matrix" / "cross_signing.json"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert BOT_PASSWORD not in key_file.read_text()
        stored = KeyFile(key_file, world.bot.settings.pickle_key.get_secret_value()).load(user)
        assert stored is not None and public_key(stored.master) == master

        bot = _bot(world)  # restart: same device, same keys, nothing new published
        await bot.start()
        try:
            assert bot.device_id == first_device
            assert _master(_keys(synapse, user), user) == master
        finally:
            await bot.stop()

        # The device is logged out (revoked): the next start is a new device, signed with the same keys.
        state_token = _stored_token(world)
        synapse.api_request("POST", "/_matrix/client/v3/logout", {}, access_token=state_token)
        bot = _bot(world)
        await bot.start()
        try:
            assert bot.device_id != first_device
            keys = _keys(synapse, user)
            assert _master(keys, user) == master
            assert _device_signed_by_ssk(keys, user, bot.device_id)
        finally:
            await bot.stop()

    _run(world, tmp_path, scenario)


def _stored_token(world: World) -> str:
    session = MatrixState(world.services.settings.data_dir / "matrix" / "state.sqlite3").session()
    assert session is not None
    return session.access_token


def test_element_journalist_in_exclude_insecure_mode_gets_trusted_answers(world: World, tmp_path: Path) -> None:
    """Encrypted group room and DM from js-sdk with the Rust crypto: answers decrypt, shield not red."""

    async def scenario(element: ElementJournalists) -> None:
        me = (await element.call("login", baseUrl=world.synapse.base_url, userId=world.journalist,
                                 password=JOURNALIST_PASSWORD))["userId"]
        bot = _bot(world)
        await bot.start()
        try:
            colleague = (await element.call("login", baseUrl=world.synapse.base_url, userId=world.admin,
                                            password=JOURNALIST_PASSWORD))["userId"]
            room = (await element.call("createRoom", userId=me, invite=[bot.user_id, colleague],
                                       encrypted=True))["roomId"]
            await element.call("join", userId=colleague, roomId=room)
            await element.call("waitJoin", userId=me, roomId=room, member=bot.user_id)

            # "casebot: QUESTION" as Element sends it, with an empty m.mentions.
            question = (await element.call("send", userId=me, roomId=room, content=_address(QUESTION)))["eventId"]
            answer = await element.call("waitReply", userId=me, roomId=room, eventId=question,
                                        sender=bot.user_id)
            _assert_trusted_answer(answer)
            assert answer["content"]["m.relates_to"]["event_id"] == question  # a thread rooted at it

            # Talk about the bot mid-sentence is not addressed to it.
            chatter = (await element.call("send", userId=me, roomId=room, content={
                "msgtype": "m.text", "body": "Ich frage nachher mal casebot: wer holt Kaffee?",
                "m.mentions": {}}))["eventId"]

            # A follow-up typed into the answer's thread, no mention, no reply: answered in the thread.
            follow_up = (await element.call("send", userId=me, roomId=room, content={
                "msgtype": "m.text", "body": "Und welche Behörde ermittelt gegen Mitto?", "m.mentions": {},
                "m.relates_to": {"rel_type": "m.thread", "event_id": question, "is_falling_back": True,
                                 "m.in_reply_to": {"event_id": answer["eventId"]}}}))["eventId"]
            second = await element.call("waitReply", userId=me, roomId=room, eventId=follow_up,
                                        sender=bot.user_id)
            _assert_trusted_answer(second)
            assert second["content"]["m.relates_to"]["event_id"] == question
            # The same in the thread from a colleague who did not ask is talk between people.
            aside = (await element.call("send", userId=colleague, roomId=room, content={
                "msgtype": "m.text", "body": "Welche Behörde ermittelt, weiss das jemand?", "m.mentions": {},
                "m.relates_to": {"rel_type": "m.thread", "event_id": question, "is_falling_back": True,
                                 "m.in_reply_to": {"event_id": second["eventId"]}}}))["eventId"]
            await asyncio.sleep(QUIET_S)
            bot_messages = (await element.call("messagesFrom", userId=me, roomId=room,
                                               sender=bot.user_id))["eventIds"]
            assert bot_messages == [answer["eventId"], second["eventId"]], (chatter, aside, bot_messages)
            # (The bot does read the colleague: addressed, the colleague is answered.)
            colleague_asks = (await element.call("send", userId=colleague, roomId=room,
                                                 content=_address(QUESTION)))["eventId"]
            _assert_trusted_answer(await element.call("waitReply", userId=colleague, roomId=room,
                                                      eventId=colleague_asks, sender=bot.user_id))

            # An encrypted direct chat: no address needed.
            dm = (await element.call("createRoom", userId=me, invite=[bot.user_id], encrypted=True,
                                     direct=True))["roomId"]
            await element.call("waitJoin", userId=me, roomId=dm, member=bot.user_id)
            asked = (await element.call("send", userId=me, roomId=dm, content={
                "msgtype": "m.text", "body": QUESTION, "m.mentions": {}}))["eventId"]
            _assert_trusted_answer(await element.call("waitReply", userId=me, roomId=dm, eventId=asked,
                                                      sender=bot.user_id))

            # "Verify session" is cancelled by the bot at once, with the reason, not left hanging.
            verified = await element.call("verifyDevice", userId=me, otherUser=bot.user_id,
                                          deviceId=bot.device_id)
            assert verified == {"phase": "Cancelled", "cancellationCode": CANCEL_CODE,
                                "cancellingUserId": bot.user_id}, verified
            # "Verify" on the bot's profile: an in-room request in the encrypted direct chat, cancelled too.
            in_room = await element.call("verifyUserInRoom", userId=me, otherUser=bot.user_id, roomId=dm)
            assert in_room == verified, in_room
        finally:
            await bot.stop()

    _run(world, tmp_path, scenario)


def test_stats_shows_trust_and_lost_keys_are_reported_then_reset_on_request(world: World, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """!stats shows the master key; keys a lost data dir no longer holds are reported, replaced only on request."""
    synapse, user = world.synapse, world.bot.user_id

    async def scenario(element: ElementJournalists) -> None:
        editor = (await element.call("login", baseUrl=synapse.base_url, userId=world.admin,
                                     password=JOURNALIST_PASSWORD))["userId"]
        bot = _bot(world)
        await bot.start()
        try:
            master = _master(_keys(synapse, user), user)
            assert master is not None
            dm = (await element.call("createRoom", userId=editor, invite=[bot.user_id], encrypted=True,
                                     direct=True))["roomId"]
            await element.call("waitJoin", userId=editor, roomId=dm, member=bot.user_id)
            asked = (await element.call("send", userId=editor, roomId=dm,
                                        content={"msgtype": "m.text", "body": "!stats", "m.mentions": {}}))
            stats = await element.call("waitReply", userId=editor, roomId=dm, eventId=asked["eventId"],
                                       sender=bot.user_id)
            assert master in stats["content"]["body"], stats["content"]["body"]
        finally:
            await bot.stop()

        # A lost data dir, access token only: the bot works on unsigned and says what to do, once.
        login = synapse.api_request("POST", "/_matrix/client/v3/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
            "password": BOT_PASSWORD})
        lost = tmp_path / "fresh-data-dir"
        for reset, expected in ((False, "CASEBOT_MATRIX__RESET_CROSS_SIGNING"), (True, "CASEBOT_MATRIX__PASSWORD")):
            caplog.clear()
            bot = _bot(world, lost, password=SecretStr(""), access_token=SecretStr(login["access_token"]),
                       reset_cross_signing=reset)
            with caplog.at_level(logging.INFO, logger="bot.matrix"):
                await bot.start()
            try:
                lines = [r.getMessage() for r in caplog.records if "cross-signing is" in r.getMessage()]
                assert len(lines) == 1 and "NOT set up" in lines[0] and expected in lines[0], lines
                assert _master(_keys(synapse, user), user) == master  # nothing replaced without the password
            finally:
                await bot.stop()

        # With the password, the reset replaces the identity (user-interactive auth) and signs the device.
        bot = _bot(world, lost, access_token=SecretStr(login["access_token"]), reset_cross_signing=True)
        await bot.start()
        try:
            keys = _keys(synapse, user)
            assert _master(keys, user) not in (None, master)
            assert _device_signed_by_ssk(keys, user, bot.device_id)
        finally:
            await bot.stop()

    _run(world, tmp_path, scenario)

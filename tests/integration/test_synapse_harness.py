"""Smoke tests for the Synapse harness, driven with matrix-nio.

The integration tests start one real Synapse for this module (installing it
into the test cache on first use, ~20 s once; each start takes ~2 s).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    LoginResponse,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

from tests.integration.synapse_harness import (
    RELAXED_RATE_LIMIT,
    SynapseHTTPError,
    SynapseServer,
    build_config,
    running_synapse,
)

try:
    from nio.crypto import ENCRYPTION_ENABLED
except ImportError:  # pragma: no cover - very old nio
    ENCRYPTION_ENABLED = False

SYNC_DEADLINE_S = 20.0


@pytest.fixture(scope="module")
def synapse() -> Iterator[SynapseServer]:
    """One Synapse for all tests in this module."""
    with running_synapse() as server:
        yield server


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _login(
    server: SynapseServer,
    user_id: str,
    password: str,
    store_path: Path | None = None,
) -> AsyncClient:
    """Return a logged-in client; with ``store_path`` it has encryption on."""
    if store_path is None:
        client = AsyncClient(server.base_url, user_id)
    else:
        store_path.mkdir(parents=True, exist_ok=True)
        client = AsyncClient(
            server.base_url,
            user_id,
            store_path=str(store_path),
            config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True),
        )
    resp = await client.login(password, device_name="harness-smoke")
    assert isinstance(resp, LoginResponse), resp
    return client


async def _sync_until(client: AsyncClient, done: Callable[[SyncResponse], bool], what: str) -> SyncResponse:
    """Sync repeatedly until ``done(response)`` is true or the deadline passes."""
    deadline = time.monotonic() + SYNC_DEADLINE_S
    while time.monotonic() < deadline:
        resp = await client.sync(timeout=1000)
        assert isinstance(resp, SyncResponse), resp
        if done(resp):
            return resp
    raise AssertionError(f"{client.user_id}: timed out waiting for {what}")


def _texts(resp: SyncResponse, room_id: str) -> list[RoomMessageText]:
    room = resp.rooms.join.get(room_id)
    if room is None:
        return []
    return [ev for ev in room.timeline.events if isinstance(ev, RoomMessageText)]


async def _room_roundtrip(server: SynapseServer, tmp_path: Path | None, encrypted: bool) -> RoomMessageText:
    """Alice creates a room, invites Bob, Bob joins, Alice sends, Bob receives.

    With ``encrypted``, both clients have a crypto store under ``tmp_path``
    and the room has ``m.room.encryption`` from creation.  Returns Bob's event.
    """
    alice_id, _ = server.register_user(_unique("alice"), "alice-pw")
    bob_id, _ = server.register_user(_unique("bob"), "bob-pw")
    store_a = tmp_path / "alice" if (encrypted and tmp_path) else None
    store_b = tmp_path / "bob" if (encrypted and tmp_path) else None
    alice = await _login(server, alice_id, "alice-pw", store_a)
    bob = await _login(server, bob_id, "bob-pw", store_b)
    try:
        if encrypted:
            for client in (alice, bob):
                if client.should_upload_keys:
                    await client.keys_upload()
        initial_state = []
        if encrypted:
            initial_state.append(
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            )
        created = await alice.room_create(name="smoke", invite=[bob_id], initial_state=initial_state)
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id

        await _sync_until(bob, lambda r: room_id in r.rooms.invite, "the invite")
        joined = await bob.join(room_id)
        assert isinstance(joined, JoinResponse), joined

        def bob_joined(_: SyncResponse) -> bool:
            room = alice.rooms.get(room_id)
            return room is not None and bob_id in room.users

        await _sync_until(alice, bob_joined, "Bob's join")
        body = f"hello {uuid.uuid4().hex}"
        sent = await alice.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": body},
            ignore_unverified_devices=True,
        )
        assert isinstance(sent, RoomSendResponse), sent

        got: list[RoomMessageText] = []

        def received(resp: SyncResponse) -> bool:
            got.extend(ev for ev in _texts(resp, room_id) if ev.body == body)
            return bool(got)

        await _sync_until(bob, received, "Alice's message")
        assert got[0].sender == alice_id
        assert got[0].event_id == sent.event_id
        return got[0]
    finally:
        await alice.close()
        await bob.close()


def test_build_config_overrides_merge_into_defaults(tmp_path: Path) -> None:
    """Nested overrides change only the named keys; plain values replace."""
    config = build_config(
        tmp_path,
        port=12345,
        registration_shared_secret="test-only",
        overrides={
            "rc_message": {"per_second": 0.1, "burst_count": 2},
            "rc_login": {"address": {"per_second": 1, "burst_count": 1}},
            "max_upload_size": "1M",
        },
    )
    assert config["rc_message"] == {"per_second": 0.1, "burst_count": 2}
    assert config["rc_login"]["address"] == {"per_second": 1, "burst_count": 1}
    assert config["rc_login"]["account"] == dict(RELAXED_RATE_LIMIT)
    assert config["max_upload_size"] == "1M"
    assert config["listeners"][0]["bind_addresses"] == ["127.0.0.1"]
    assert config["enable_registration"] is False
    assert config["federation_domain_whitelist"] == []


@pytest.mark.integration
def test_register_and_plain_room_roundtrip(synapse: SynapseServer) -> None:
    """Two registered users exchange a message in an unencrypted room."""
    assert synapse.base_url.startswith("http://127.0.0.1:")
    assert synapse.log_path.exists()
    event = asyncio.run(_room_roundtrip(synapse, None, encrypted=False))
    assert not event.decrypted


@pytest.mark.integration
def test_register_admin_and_duplicate(synapse: SynapseServer) -> None:
    """``admin=True`` makes a server admin; a taken localpart is M_USER_IN_USE."""
    localpart = _unique("admin")
    user_id, token = synapse.register_user(localpart, "pw", admin=True)
    assert user_id == f"@{localpart}:{synapse.server_name}"
    who = synapse.api_request("GET", "/_matrix/client/v3/account/whoami", access_token=token)
    assert who["user_id"] == user_id
    info = synapse.api_request("GET", f"/_synapse/admin/v2/users/{user_id}", access_token=token)
    assert info["admin"] is True
    with pytest.raises(SynapseHTTPError) as excinfo:
        synapse.register_user(localpart, "pw")
    assert excinfo.value.errcode == "M_USER_IN_USE"


@pytest.mark.integration
@pytest.mark.skipif(
    not ENCRYPTION_ENABLED,
    reason="matrix-nio e2e not importable: install 'matrix-nio[e2e]' (vodozemac)",
)
def test_encrypted_room_roundtrip(synapse: SynapseServer, tmp_path: Path) -> None:
    """Alice's megolm-encrypted message is decrypted by Bob."""
    event = asyncio.run(_room_roundtrip(synapse, tmp_path, encrypted=True))
    assert event.decrypted


@pytest.mark.integration
def test_restart_keeps_data(synapse: SynapseServer) -> None:
    """stop()/start() and restart() keep the port, database and access tokens."""
    user_id, token = synapse.register_user(_unique("persist"), "pw")
    base_url = synapse.base_url
    synapse.stop()
    assert not synapse.is_running
    synapse.start()
    assert synapse.base_url == base_url
    who = synapse.api_request("GET", "/_matrix/client/v3/account/whoami", access_token=token)
    assert who["user_id"] == user_id
    synapse.restart()
    who = synapse.api_request("GET", "/_matrix/client/v3/account/whoami", access_token=token)
    assert who["user_id"] == user_id


@pytest.mark.integration
def test_rate_limit_override_yields_limit_exceeded() -> None:
    """A strict ``rc_message`` override makes Synapse answer M_LIMIT_EXCEEDED."""
    strict = {"rc_message": {"per_second": 0.1, "burst_count": 2}}
    with running_synapse(config_overrides=strict) as server:
        _, token = server.register_user("spammer", "pw")
        room_id = server.api_request("POST", "/_matrix/client/v3/createRoom", {}, access_token=token)[
            "room_id"
        ]
        path = f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message"
        with pytest.raises(SynapseHTTPError) as excinfo:
            for n in range(10):
                server.api_request(
                    "PUT",
                    f"{path}/txn{n}",
                    {"msgtype": "m.text", "body": f"msg {n}"},
                    access_token=token,
                )
    assert excinfo.value.status == 429
    assert excinfo.value.errcode == "M_LIMIT_EXCEEDED"

"""Cross-signing for the bot's own account, which matrix-nio does not do.

Why: Element (matrix-js-sdk with the Rust crypto) shows every message from a
device that its owner has not signed with a red shield, and with "exclude
insecure devices" it neither decrypts such a device's messages nor shares
room keys with it. A device is signed by its owner when the account has a
cross-signing identity (master key, which signs a self-signing and a
user-signing key) and the self-signing key signs the device's key.

What :meth:`CrossSigning.ensure` does at every start:

* the account has no cross-signing keys: create the three Ed25519 keys,
  store them, publish them (``/keys/device_signing/upload``, with the bot's
  password when the homeserver asks for user-interactive auth), then sign
  the bot's device (``/keys/signatures/upload``);
* the account has the keys this data dir holds: sign the device if it is
  not yet signed (a new device after a revoked login), upload nothing else;
* the account has keys this data dir does not hold (data dir lost, or set
  up from another client): say so and leave them, unless the operator asked
  to replace them (``CASEBOT_MATRIX__RESET_CROSS_SIGNING``).

The private keys live in one file under ``<data dir>/matrix/``, encrypted
with AES-GCM under a key derived (scrypt) from the pickle key, 0600 in a
0700 folder. Signatures are Ed25519 from ``cryptography`` over canonical
JSON (``canonicaljson``) as the spec requires; nothing is hand-rolled.

The pure part (key objects, signatures, file format) needs no homeserver;
the I/O goes through one :data:`JsonRequest` callable the adapter provides.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canonicaljson import encode_canonical_json
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nio import AsyncClient

from index.errors import CasebotError

log = logging.getLogger(__name__)

#: ``(method, path, body) -> (HTTP status, JSON body)``; raises on network failure.
JsonRequest = Callable[[str, str, Mapping[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]

KEYS_QUERY = "/_matrix/client/v3/keys/query"
DEVICE_SIGNING_UPLOAD = "/_matrix/client/v3/keys/device_signing/upload"
SIGNATURES_UPLOAD = "/_matrix/client/v3/keys/signatures/upload"
_FILE_VERSION = 1
_SCRYPT_N = 2**15


_UIA_HINT = (
    "the homeserver wants the bot account's password to publish its cross-signing keys: set "
    "CASEBOT_MATRIX__PASSWORD (the access token stays in use) and restart once. Until then Element marks "
    "the bot's messages as sent by an unverified device, and clients that exclude insecure devices "
    "cannot talk with it.")


class CrossSigningError(CasebotError):
    """Cross-signing could not be set up; the message says why and what to do."""


def unpadded_b64(data: bytes) -> str:
    """The spec's base64: standard alphabet, no ``=`` padding."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def public_key(key: Ed25519PrivateKey) -> str:
    return unpadded_b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def sign_json(obj: Mapping[str, Any], user_id: str, key: Ed25519PrivateKey) -> dict[str, Any]:
    """``obj`` with ``key``'s signature added under ``signatures[user_id]``.

    The signature covers the canonical JSON of ``obj`` without its
    ``signatures`` and ``unsigned`` members (spec: "Signing JSON"); the
    signatures already there are kept.
    """
    unsigned = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    signature = unpadded_b64(key.sign(encode_canonical_json(unsigned)))
    signatures = {u: dict(s) for u, s in obj.get("signatures", {}).items()}
    signatures.setdefault(user_id, {})[f"ed25519:{public_key(key)}"] = signature
    return {**unsigned, "signatures": signatures}


@dataclass(frozen=True)
class CrossSigningKeys:
    """The account's three private cross-signing keys."""

    master: Ed25519PrivateKey
    self_signing: Ed25519PrivateKey
    user_signing: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> CrossSigningKeys:
        return cls(Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate())

    def __repr__(self) -> str:  # never show private keys in logs or tracebacks
        return f"CrossSigningKeys(master={public_key(self.master)})"

    def upload_body(self, user_id: str) -> dict[str, Any]:
        """The body of ``/keys/device_signing/upload``: three public keys, the sub-keys signed by master."""

        def key_object(usage: str, key: Ed25519PrivateKey) -> dict[str, Any]:
            pub = public_key(key)
            return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{pub}": pub}}

        return {
            "master_key": key_object("master", self.master),
            "self_signing_key": sign_json(key_object("self_signing", self.self_signing), user_id, self.master),
            "user_signing_key": sign_json(key_object("user_signing", self.user_signing), user_id, self.master),
        }


class KeyFile:
    """The private keys on disk, encrypted with the pickle key.

    Format: JSON with the scrypt salt, the AES-GCM nonce and the ciphertext
    of the three 32-byte seeds; the user id is bound in as associated data,
    so a file copied to another account does not load.
    """

    def __init__(self, path: Path, pickle_key: str) -> None:
        self._path = path
        self._pickle_key = pickle_key.encode()

    @property
    def path(self) -> Path:
        return self._path

    def _aead(self, salt: bytes) -> AESGCM:
        kdf = Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=8, p=1)
        return AESGCM(kdf.derive(self._pickle_key))

    def load(self, user_id: str) -> CrossSigningKeys | None:
        """The stored keys; None when there is no file. Raises when it cannot be read."""
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise CrossSigningError(f"The cross-signing key file {self._path} is unreadable ({error}).") from None
        if data.get("version") != _FILE_VERSION or data.get("user_id") != user_id:
            raise CrossSigningError(f"The cross-signing key file {self._path} is not for {user_id}.")
        try:
            seeds = self._aead(base64.b64decode(data["salt"])).decrypt(
                base64.b64decode(data["nonce"]), base64.b64decode(data["ciphertext"]), user_id.encode())
        except InvalidTag:
            raise CrossSigningError(f"The cross-signing key file {self._path} cannot be decrypted: "
                                    "was CASEBOT_MATRIX__PICKLE_KEY changed?") from None
        return CrossSigningKeys(*(Ed25519PrivateKey.from_private_bytes(seeds[i:i + 32]) for i in (0, 32, 64)))

    def save(self, user_id: str, keys: CrossSigningKeys) -> None:
        """Write the keys atomically, readable by the owner only."""
        seeds = b"".join(k.private_bytes_raw() for k in (keys.master, keys.self_signing, keys.user_signing))
        salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
        ciphertext = self._aead(salt).encrypt(nonce, seeds, user_id.encode())
        data = {"version": _FILE_VERSION, "user_id": user_id, "master_key": public_key(keys.master),
                "salt": base64.b64encode(salt).decode(), "nonce": base64.b64encode(nonce).decode(),
                "ciphertext": base64.b64encode(ciphertext).decode()}
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self._path.with_name(self._path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self._path)


@dataclass(frozen=True)
class TrustStatus:
    """Whether the bot's device is signed by its account, for the start log and ``!stats``."""

    signed: bool
    detail: str
    master_key: str = ""  # public; lets an admin compare the identity Element pinned

    def log_line(self) -> str:
        if self.signed:
            return f"cross-signing is set up: device signed by the account's master key {self.master_key}"
        return f"cross-signing is NOT set up: {self.detail}"


def homeserver_json(client: AsyncClient) -> JsonRequest:
    """A :data:`JsonRequest` over nio's HTTP session, with the client's access token."""

    async def request(method: str, path: str, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {client.access_token}", "Content-Type": "application/json"}
        response = await client.send(method, path, json.dumps(body), headers)
        try:
            data = await response.json(content_type=None)
        except ValueError:
            data = None
        finally:
            response.release()
        return response.status, data if isinstance(data, dict) else {}

    return request


def _only_key(key_object: object) -> str | None:
    """The one public key of a cross-signing key object, as returned by ``/keys/query``."""
    if not isinstance(key_object, Mapping):
        return None
    keys = key_object.get("keys")
    if isinstance(keys, Mapping) and len(keys) == 1:
        return str(next(iter(keys.values())))
    return None


class CrossSigning:
    """Sets up and keeps the bot account's cross-signing identity (see the module docstring)."""

    def __init__(self, request: JsonRequest, key_file: KeyFile, user_id: str, device_id: str,
                 password: str = "", reset: bool = False) -> None:
        self._request = request
        self._file = key_file
        self._user_id = user_id
        self._device_id = device_id
        self._password = password
        self._reset = reset

    async def ensure(self) -> TrustStatus:
        """Make sure the account has this data dir's cross-signing keys and the device is signed.

        Never raises for what the homeserver answers: an unsigned bot still
        works with every client that does not exclude insecure devices, so
        a failure is a :class:`TrustStatus` whose detail says what to do.
        Network errors propagate (the caller logs them; the next start retries).
        """
        try:
            return await self._ensure()
        except CrossSigningError as error:
            return TrustStatus(False, str(error))

    async def _ensure(self) -> TrustStatus:
        user = self._user_id
        query = await self._query()
        server_master = _only_key(query.get("master_keys", {}).get(user))
        server_ssk = _only_key(query.get("self_signing_keys", {}).get(user))
        stored = await asyncio.to_thread(self._file.load, user)  # scrypt: not on the event loop
        holds_them = (stored is not None and server_master == public_key(stored.master)
                      and server_ssk == public_key(stored.self_signing))
        if holds_them and stored is not None:
            keys = stored
        elif server_master is not None and not self._reset:
            raise CrossSigningError(
                f"{user} already has cross-signing keys (master key {server_master}) that "
                f"{self._file.path} does not hold (data dir lost, or set up from another client). "
                "Restore the data dir, or set CASEBOT_MATRIX__RESET_CROSS_SIGNING=true for one start "
                "to replace them (people who talk with the bot will see that its identity changed).")
        else:
            if server_master is not None and not self._password:  # replacing keys always needs the password
                raise CrossSigningError(_UIA_HINT)
            if stored is None or server_master is not None:  # first start, or the reset asked for
                stored = CrossSigningKeys.generate()
                # Stored before the upload: keys on the server that this dir has lost are worse than
                # keys here that the server has not seen yet (the next start uploads them).
                await asyncio.to_thread(self._file.save, user, stored)
            keys = stored
            await self._upload(keys)
            log.info("matrix: published new cross-signing keys for %s (master key %s)", user,
                     public_key(keys.master))
            query = await self._query()
        await self._sign_device(query, keys)
        return TrustStatus(True, "", public_key(keys.master))

    async def _query(self) -> dict[str, Any]:
        status, body = await self._request("POST", KEYS_QUERY, {"device_keys": {self._user_id: []}})
        if status != 200:
            raise CrossSigningError(f"the homeserver answered the key query with {status} {body.get('errcode')}.")
        return body

    async def _upload(self, keys: CrossSigningKeys) -> None:
        payload = keys.upload_body(self._user_id)
        status, body = await self._request("POST", DEVICE_SIGNING_UPLOAD, payload)
        if status == 401 and "flows" in body:  # user-interactive auth
            if not self._password:
                raise CrossSigningError(_UIA_HINT)
            stages = [stage for flow in body.get("flows", []) for stage in flow.get("stages", [])]
            if "m.login.password" not in stages:
                raise CrossSigningError("the homeserver does not accept the password to publish cross-signing "
                                        f"keys (it asks for {', '.join(stages) or 'nothing known'}).")
            auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": self._user_id},
                    "password": self._password, "session": body.get("session")}
            status, body = await self._request("POST", DEVICE_SIGNING_UPLOAD, {**payload, "auth": auth})
            if status in {401, 403}:
                raise CrossSigningError("the homeserver rejected CASEBOT_MATRIX__PASSWORD when publishing the "
                                        "cross-signing keys.")
        if status != 200:
            raise CrossSigningError(f"publishing the cross-signing keys failed: {status} {body.get('errcode')} "
                                    f"{body.get('error', '')}".strip())

    async def _sign_device(self, query: Mapping[str, Any], keys: CrossSigningKeys) -> None:
        device = query.get("device_keys", {}).get(self._user_id, {}).get(self._device_id)
        if not isinstance(device, Mapping):
            raise CrossSigningError(f"the homeserver does not list the keys of the bot's device {self._device_id} "
                                    "yet; the next start signs it.")
        ssk_id = f"ed25519:{public_key(keys.self_signing)}"
        if ssk_id in device.get("signatures", {}).get(self._user_id, {}):
            return
        signed = sign_json(device, self._user_id, keys.self_signing)
        status, body = await self._request("POST", SIGNATURES_UPLOAD, {self._user_id: {self._device_id: signed}})
        failures = body.get("failures") or {}
        if status != 200 or failures:
            raise CrossSigningError(f"signing the bot's device {self._device_id} failed: {status} "
                                    f"{json.dumps(failures)[:300]}")
        log.info("matrix: signed device %s with the account's self-signing key", self._device_id)

"""Cross-signing key objects, signatures and the key file: pure, no homeserver.

Signatures are checked with vodozemac's Ed25519 (the Rust crypto matrix-nio
0.26 uses), an implementation independent of the ``cryptography`` one that made them.
"""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
import vodozemac
from canonicaljson import encode_canonical_json

from bot.matrix.crosssigning import CrossSigningError, CrossSigningKeys, KeyFile, public_key, sign_json
from bot.matrix.verification import CANCEL_REASON, is_room_request, room_cancel, to_device_cancel

USER = "@casebot:example.org"


def _verify(obj: dict[str, object], user_id: str, key_b64: str) -> None:
    signatures = obj["signatures"]
    assert isinstance(signatures, dict)
    signature = signatures[user_id][f"ed25519:{key_b64}"]
    message = encode_canonical_json({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})
    vodozemac.Ed25519PublicKey.from_base64(key_b64).verify_signature(
        message, vodozemac.Ed25519Signature.from_base64(signature))  # raises SignatureException when wrong


def test_upload_body_has_three_keys_and_sub_keys_signed_by_master() -> None:
    keys = CrossSigningKeys.generate()
    body = keys.upload_body(USER)
    master = public_key(keys.master)
    assert body["master_key"] == {"user_id": USER, "usage": ["master"], "keys": {f"ed25519:{master}": master}}
    for name, usage, key in (("self_signing_key", "self_signing", keys.self_signing),
                             ("user_signing_key", "user_signing", keys.user_signing)):
        obj = body[name]
        assert obj["usage"] == [usage]
        assert obj["keys"] == {f"ed25519:{public_key(key)}": public_key(key)}
        _verify(obj, USER, master)
    assert "=" not in master and len(base64.b64decode(master + "=")) == 32


def test_device_signature_covers_canonical_json_and_keeps_other_signatures() -> None:
    keys = CrossSigningKeys.generate()
    device = {"user_id": USER, "device_id": "DEV", "algorithms": ["m.megolm.v1.aes-sha2"],
              "keys": {"ed25519:DEV": "x", "curve25519:DEV": "y"},
              "signatures": {USER: {"ed25519:DEV": "device-self-signature"}},
              "unsigned": {"device_display_name": "casebot"}}
    signed = sign_json(device, USER, keys.self_signing)
    assert signed["signatures"][USER]["ed25519:DEV"] == "device-self-signature"
    assert "unsigned" not in signed
    _verify(signed, USER, public_key(keys.self_signing))
    tampered = {**signed, "device_id": "OTHER"}
    with pytest.raises(vodozemac.SignatureException):
        _verify(tampered, USER, public_key(keys.self_signing))


def test_key_file_round_trip_is_private_and_bound_to_pickle_key_and_user(tmp_path: Path) -> None:
    path = tmp_path / "matrix" / "cross_signing.json"
    keys = CrossSigningKeys.generate()
    KeyFile(path, "pickle-1").save(USER, keys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    loaded = KeyFile(path, "pickle-1").load(USER)
    assert loaded is not None
    assert [public_key(k) for k in (loaded.master, loaded.self_signing, loaded.user_signing)] == \
        [public_key(k) for k in (keys.master, keys.self_signing, keys.user_signing)]
    raw = path.read_text()
    seed = base64.b64encode(keys.master.private_bytes_raw()).decode()
    assert seed not in raw and json.loads(raw)["master_key"] == public_key(keys.master)
    assert public_key(keys.master) in repr(keys) and seed not in repr(keys)
    with pytest.raises(CrossSigningError, match="CASEBOT_MATRIX__PICKLE_KEY"):
        KeyFile(path, "pickle-2").load(USER)
    with pytest.raises(CrossSigningError, match="not for @other"):
        KeyFile(path, "pickle-1").load("@other:example.org")
    assert KeyFile(tmp_path / "missing.json", "pickle-1").load(USER) is None


def test_verification_requests_are_cancelled_with_the_reason() -> None:
    request = {"from_device": "JDEV", "transaction_id": "t1", "methods": ["m.sas.v1"], "timestamp": 1}
    cancel = to_device_cancel("m.key.verification.request", "@j:example.org", request)
    assert cancel is not None
    assert (cancel.user_id, cancel.device_id) == ("@j:example.org", "JDEV")
    assert cancel.content == {"transaction_id": "t1", "code": "m.user", "reason": CANCEL_REASON}
    assert to_device_cancel("m.key.verification.start", "@j:example.org", request) is not None
    assert to_device_cancel("m.room_key_request", "@j:example.org", request) is None
    assert to_device_cancel("m.key.verification.request", "@j:example.org", {"transaction_id": "t"}) is None
    assert is_room_request({"msgtype": "m.key.verification.request", "body": "x"})
    assert not is_room_request({"msgtype": "m.text", "body": "m.key.verification.request"})
    assert room_cancel("$req")["m.relates_to"] == {"rel_type": "m.reference", "event_id": "$req"}

"""Interactive verification requests: cancelled at once, with the reason, never left hanging.

Why not answer them: SAS verification proves an identity because two people
compare the same emoji on two screens. An unattended bot has no one to look
at its screen; a bot that confirms every comparison would "verify" a
man-in-the-middle just the same, so the green shield would mean nothing.
The bot's trust comes from cross-signing instead (:mod:`bot.matrix.crosssigning`):
its device is signed by its account, Element shows no red shield, pins the
account's identity on first contact and warns if it ever changes. An admin
who wants more compares the master key the bot logs at start and shows in
``!stats``.

Pure: from a verification request's type and content to the cancellation to
send. The adapter sends it (to the requesting device, or into the room for
a request made in a room).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REQUEST = "m.key.verification.request"
START = "m.key.verification.start"
CANCEL = "m.key.verification.cancel"
CANCEL_CODE = "m.user"  # the spec's code for "the user cancelled"; the reason says why
CANCEL_REASON = (
    "casebot is an unattended bot: nobody can compare emoji on its side, so it does not verify "
    "interactively. Its device is signed by its own account (cross-signing); ask your newsroom's "
    "admin for the bot's master key if you want to compare it."
)


@dataclass(frozen=True)
class ToDeviceCancel:
    """A ``m.key.verification.cancel`` for one device of ``user_id``."""

    user_id: str
    device_id: str
    content: dict[str, Any]


def to_device_cancel(event_type: str, sender: str, content: Mapping[str, Any]) -> ToDeviceCancel | None:
    """The cancellation for a to-device verification request or start; None for anything else."""
    if event_type not in (REQUEST, START):
        return None
    transaction = content.get("transaction_id")
    device = content.get("from_device")
    if not isinstance(transaction, str) or not isinstance(device, str) or not transaction or not device:
        return None
    return ToDeviceCancel(sender, device, {"transaction_id": transaction, "code": CANCEL_CODE,
                                           "reason": CANCEL_REASON})


def is_room_request(content: Mapping[str, Any]) -> bool:
    """Whether a room message is an in-room verification request (Element's "Verify user")."""
    return content.get("msgtype") == REQUEST


def room_cancel(request_event_id: str) -> dict[str, Any]:
    """The content of the ``m.key.verification.cancel`` room event answering an in-room request."""
    return {"code": CANCEL_CODE, "reason": CANCEL_REASON,
            "m.relates_to": {"rel_type": "m.reference", "event_id": request_event_id}}

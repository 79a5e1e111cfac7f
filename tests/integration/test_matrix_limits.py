"""Matrix replies a homeserver accepts, and one error path, against a real Synapse.

A ``!sources`` list of 252 articles used to be one event over Matrix's
64 KiB limit, refused by the homeserver: no reply at all. An unexpected
exception used to send nothing. Both go through the real adapter here.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot.matrix.adapter import MatrixAdapter
from index.store import ArticleRecord
from tests.integration.test_matrix import QUESTION, Person, World, _joined, _with_bot, world

pytestmark = pytest.mark.integration
__all__ = ["world"]  # the module's Synapse and indexed case

EVENT_LIMIT = 65_536


def _many_articles(count: int) -> list[ArticleRecord]:
    return [ArticleRecord(f"a{i}", f"Mitto-Artikel {i}: ein langer Titel über SMS-Überwachung und Firmen " * 2,
                          "Netzwoche", f"https://www.netzwoche.ch/news/{i:03d}-" + "mitto-" * 20, "2022-02-10",
                          "de", f"a{i}.md", "h") for i in range(count)]


def test_long_sources_list_is_split_and_failures_get_the_error_sentence(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(world.services.case, "sources", lambda: _many_articles(252))

    def broken(*_args: object) -> object:
        raise KeyError("chunk-17")

    async def scenario(bot: MatrixAdapter) -> None:
        journalist = await Person.login(world.synapse, world.journalist, tmp_path / "journalist")
        try:
            room = await journalist.create_room(invite=[bot.user_id])
            await _joined(journalist, room, bot.user_id)
            asked = await journalist.say(room, "!sources")
            parts = await journalist.until(
                lambda: (found := journalist.replies_to(room, asked, bot.user_id)) and len(found) >= 2
                and all(f"/news/{i:03d}-" in "".join(e.source["content"]["body"] for e in found)
                        for i in range(252)) and found, "every article of the list")
            for event in parts:
                assert len(json.dumps(event.source, ensure_ascii=False).encode()) < EVENT_LIMIT
                assert event.source["content"]["body"].strip()
            await journalist.until(lambda: bot._state.is_handled(asked), "the question marked handled")

            monkeypatch.setattr(world.services.case, "ask", broken)
            failing = await journalist.say(room, QUESTION)
            reply = await journalist.reply(room, failing, bot.user_id)
            assert reply.source["content"]["body"] == world.services.prompts.text("de", "internal_error")
            await journalist.until(lambda: bot._state.is_handled(failing), "the failed question marked handled")
        finally:
            await journalist.close()

    asyncio.run(_with_bot(world, scenario))

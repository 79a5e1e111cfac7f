"""The terminal adapter (``casebot chat``) and plain-text rendering.

Thin like every adapter: a line typed -> :class:`Incoming` -> conversation ->
:class:`Reply` -> plain text on stdout.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from bot.conversation import Conversation, Incoming, Reply
from index.answer import format_attribution, sources_block
from index.prompts import PromptLibrary


def render_plain(reply: Reply, prompts: PromptLibrary) -> str:
    """A reply as plain text: the answer, then its numbered sources."""
    if reply.answer is not None:
        block = sources_block(reply.answer.citations, reply.language, prompts)
        return reply.text + ("\n\n" + block if block else "")
    if reply.articles:
        lines = [reply.text]
        for article in reply.articles:
            attribution = format_attribution(article.outlet, article.published)
            line = f"- {article.title}"
            if attribution:
                line += f" ({attribution})"
            if article.url:
                line += f" {article.url}"
            lines.append(line)
        return "\n".join(lines)
    return reply.text


async def chat_loop(
    conversation: Conversation,
    prompts: PromptLibrary,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    is_admin: bool = True,
) -> None:
    """Read questions line by line until EOF or ``/quit``; print each reply.

    The local operator is the admin of their own terminal, so ``/reindex``
    and ``/stats`` work here, and is not rate-limited.
    """
    interactive = stdin.isatty()
    while True:
        if interactive:
            stdout.write("> ")
            stdout.flush()
        line = await asyncio.to_thread(stdin.readline)
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit", "!quit"):
            break
        reply = await conversation.handle(Incoming(chat_id="console", user_id="console", text=text,
                                                   is_admin=is_admin, local_operator=True))
        if reply.kind == "silent":
            continue
        stdout.write(render_plain(reply, prompts) + "\n\n")
        stdout.flush()

"""LLM-mode answers over the real demo index, with scripted model replies.

The model is the only fake (a llama-index ``CustomLLM`` that returns what a
test wrote); retrieval, prompts, the citation and support checks (with the
real default embedder) and the conversation are the real ones.
tests/integration/test_llm.py runs a real model.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core.llms import CompletionResponse, CompletionResponseGen, CustomLLM, LLMMetadata
from pydantic import Field

import index.llm
from bot.app import Services, build_services
from bot.conversation import Incoming
from index.grounded import GroundedAnswerer
from tests.conftest import DEMO_ARTICLES, HEISE, NETZWOCHE, make_settings

QUESTION = "Welche Behörde hat Mitto ins Visier genommen?"


class Scripted(CustomLLM):
    """Returns the next scripted reply (an Exception is raised); records prompts."""

    replies: list[Any] = Field(default_factory=list)
    prompts: list[str] = Field(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="scripted")

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.prompts.append(prompt)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return CompletionResponse(text=reply)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        raise NotImplementedError


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, Scripted]]:
    model = Scripted()
    patch = pytest.MonkeyPatch()
    patch.setattr(index.llm, "build_llm", lambda spec, deadline=None: model)
    root = tmp_path_factory.mktemp("grounded")
    shutil.copytree(DEMO_ARTICLES, root / "articles")
    services = build_services(make_settings(root / "data", root / "articles",
                                            llm={"provider": "openai", "base_url": "http://127.0.0.1:9/v1"}))
    services.case.index()
    yield services, model
    patch.undo()


def ask(scripted: tuple[Services, Scripted], *replies: Any, question: str = QUESTION) -> Any:
    services, model = scripted
    model.replies[:] = list(replies)
    model.prompts.clear()
    answerer = services.case.answerer
    assert isinstance(answerer, GroundedAnswerer)
    return answerer.answer_with_trace(question)


def number_of(scripted: tuple[Services, Scripted], needle: str, question: str = QUESTION) -> int:
    """The number the prompt gives the passage containing ``needle``."""
    ask(scripted, "NO_ANSWER", question=question)
    prompt = scripted[1].prompts[-1]
    for number, body in re.findall(r'<passage number="(\d+)"[^>]*>(.*?)</passage>', prompt, re.DOTALL):
        if needle in body:
            return int(number)
    raise AssertionError(f"no passage with {needle!r}")


def test_verified_answer_cites_only_supplied_passages_renumbered(scripted: tuple[Services, Scripted]) -> None:
    n = number_of(scripted, "EDÖB")
    answer, trace = ask(scripted, f"Der EDÖB nahm Mitto ins Visier [{n}]. PWNED. Mitto [0]. Mitto [9].")
    notice = scripted[0].prompts.text("de", "llm_written")
    assert answer.mode == "llm" and not answer.refused
    assert answer.text == f"Der EDÖB nahm Mitto ins Visier [1].\n\n{notice}" and answer.notice == notice
    assert len(answer.citations) == 1 and answer.citations[0].url in {HEISE, NETZWOCHE}
    assert answer.citations[0].quote and answer.citations[0].n == 1
    assert trace.checked.removed_statements == 3


def test_a_contradicting_sentence_is_dropped_and_the_rest_kept(scripted: tuple[Services, Scripted]) -> None:
    question = "Arbeitet Gorelik noch für Mitto?"
    n = number_of(scripted, "nicht mehr", question)
    answer, trace = ask(scripted, f"Ja, Gorelik arbeitet noch für Mitto [{n}]. "
                                  f"Einige Kunden wurden informiert, dass Gorelik nicht mehr für das Unternehmen "
                                  f"arbeite [{n}].", question=question)
    assert answer.mode == "llm"
    assert "noch für Mitto" not in answer.text and "nicht mehr" in answer.text
    assert [v.reason for _, v in trace.verdicts] == ["negation", "ok"]


def test_the_models_no_answer_is_a_refusal(scripted: tuple[Services, Scripted]) -> None:
    answer, trace = ask(scripted, "NO_ANSWER")
    assert trace.generation is not None  # the extractive side would have answered ...
    assert answer.refused and not answer.citations and answer.mode == "refused:model-no-answer"  # ... the model said no


def test_prompt_numbers_and_fences_passages_and_asks_in_the_question_language(
    scripted: tuple[Services, Scripted],
) -> None:
    ask(scripted, "NO_ANSWER")
    prompt = scripted[1].prompts[-1]
    numbers = [int(n) for n in re.findall(r'<passage number="(\d+)"', prompt)]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 2
    assert prompt.count("</passage>") == len(numbers)
    assert "Antworte auf Deutsch" in prompt and QUESTION in prompt
    ask(scripted, "NO_ANSWER", question="Which US senator did Twitter inform that it is dropping Mitto?")
    assert "Answer in English" in scripted[1].prompts[-1]


@pytest.mark.parametrize(("reply", "mode"), [
    ("Mitto [0]. The sun is shining [1].", "extractive-fallback:unsupported"),
    ("Der EDÖB ermittelt.", "extractive-fallback:uncited"),
    ("Mitto verkauft auch Kaffeemaschinen in Italien [1].", "extractive-fallback:unsupported"),
    ("Mitto wurde 1999 vom EDÖB untersucht [1].", "extractive-fallback:unsupported"),
    # a small model echoing its rules, example markers included
    ("Regeln:\n3. Beende jeden Satz mit der Nummer des Auszugs, der ihn belegt, in eckigen Klammern, "
     "zum Beispiel [1] oder [2][3].", "extractive-fallback:uncited"),
])
def test_no_supported_sentence_sends_the_extractive_answer_and_says_so(
    scripted: tuple[Services, Scripted], reply: str, mode: str
) -> None:
    answer, _ = ask(scripted, reply)
    notice = scripted[0].prompts.text("de", "llm_unverified")
    assert answer.mode == mode and answer.notice == notice
    assert answer.text.startswith(notice + "\n\nDas steht in den Artikeln dazu:")  # the extractive answer
    assert answer.citations and "sun" not in answer.text and "Kaffee" not in answer.text


def test_a_failing_model_falls_back_with_a_notice_in_every_adapter(scripted: tuple[Services, Scripted]) -> None:
    services, model = scripted
    model.replies[:] = [ConnectionError("connection refused")]
    reply = asyncio.run(services.conversation.handle(Incoming("chat", "user", QUESTION)))
    notice = services.prompts.text("de", "llm_unavailable")
    assert reply.answer is not None and reply.answer.mode == "extractive-fallback"
    assert reply.text.startswith(notice + "\n\n") and reply.answer.citations


def test_off_topic_questions_are_refused_before_the_model(scripted: tuple[Services, Scripted]) -> None:
    answer, trace = ask(scripted, question="What is the weather forecast for Zurich tomorrow?")
    assert answer.refused and trace.generation is None and not scripted[1].prompts


def test_follow_up_is_rewritten_by_the_model_and_used_for_retrieval(scripted: tuple[Services, Scripted]) -> None:
    services, model = scripted

    async def talk() -> Any:
        model.replies[:] = ["NO_ANSWER"]
        await services.conversation.handle(Incoming("chat-f", "user", "Wer ist Ilja Gorelik?"))
        model.replies[:] = ["Arbeitet Ilja Gorelik noch bei Mitto?",
                            "Laut Bloomberg arbeitet Gorelik nicht mehr für das Unternehmen [1]."]
        return await services.conversation.handle(Incoming("chat-f", "user", "Arbeitet er noch dort?"))

    model.prompts.clear()
    reply = asyncio.run(talk())
    rewrite_prompt, answer_prompt = model.prompts[-2:]
    assert "Wer ist Ilja Gorelik?" in rewrite_prompt and "Arbeitet er noch dort?" in rewrite_prompt
    assert "Frage: Arbeitet Ilja Gorelik noch bei Mitto?" in answer_prompt
    assert reply.answer.mode == "llm" and "Gorelik" in reply.text


def test_an_unreachable_model_is_asked_once_per_follow_up(scripted: tuple[Services, Scripted]) -> None:
    services, model = scripted
    answerer = services.case.answerer
    assert isinstance(answerer, GroundedAnswerer)
    model.replies[:] = [ConnectionError("connection refused")]
    model.prompts.clear()
    answer, trace = answerer.answer_with_trace("Arbeitet er noch dort?", "de", "Wer ist Ilja Gorelik? Arbeitet er noch dort?",
                                               previous_question="Wer ist Ilja Gorelik?")
    assert len(model.prompts) == 1 and trace.error
    assert answer.mode == "extractive-fallback" and answer.notice and "nicht mehr" in answer.text

"""Deterministic stand-ins for the two models of an LLM-judged evaluation.

* `EchoChat` answers like a perfectly extractive RAG model: the first sentence of document 1,
  cited as [1] (plus, optionally, an invented sentence no document supports).
* `OverlapJudge` answers RAGAS' prompts (faithfulness, response relevancy, context precision
  and recall) in the JSON they ask for, deciding by word overlap. Crude, but a real judge of
  the text it is shown: an unsupported sentence gets verdict 0, so faithfulness drops.
"""

from __future__ import annotations

import json
import re
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

NO_ANSWER = "I don't know based on the documents you can access."
_DOC = re.compile(r'<document id="1"[^>]*>\n(.*?)\n</document>', re.S)
_WORD = re.compile(r"[a-z0-9]{4,}")
_CITE = re.compile(r"\s*\[\d+(?:,\s*\d+)*\]")


def words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def sentences(text: str) -> list[str]:
    clean = _CITE.sub("", text)
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", clean) if s.strip()]


def supported(claim: str, context: str, threshold: float = 0.6) -> bool:
    need = words(claim)
    return bool(need) and len(need & words(context)) / len(need) >= threshold


class _Computed(GenericFakeChatModel):
    """A fake chat model whose reply is computed from the prompt (streams word by word)."""

    messages: Any = None
    calls: int = 0

    def reply(self, prompt: str) -> str:
        raise NotImplementedError

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls += 1
        prompt = "\n".join(str(m.content) for m in messages)
        message = AIMessage(self.reply(prompt))
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info={"finish_reason": "stop"})]
        )


class EchoChat(_Computed):
    invented: str | None = None  # appended to every answer when set

    def reply(self, prompt: str) -> str:
        match = _DOC.search(prompt)
        if match is None:
            return NO_ANSWER
        first = sentences(match.group(1).strip())[0]
        return f"{first} [1]" + (f" {self.invented}" if self.invented else "")


class OverlapJudge(_Computed):
    def reply(self, prompt: str) -> str:
        raw = prompt.rsplit("\ninput: ", 1)[1].rsplit("\nOutput:", 1)[0]
        data = json.loads(raw)
        keys = set(data)
        if keys == {"question", "answer"}:  # faithfulness: statements of the answer
            return json.dumps({"statements": sentences(data["answer"])})
        if keys == {"context", "statements"}:  # faithfulness: one verdict per statement
            verdicts = [
                {"statement": s, "reason": "overlap", "verdict": int(supported(s, data["context"]))}
                for s in data["statements"]
            ]
            return json.dumps({"statements": verdicts})
        if keys == {"response"}:  # response relevancy: the question this answers
            text = data["response"]
            return json.dumps(
                {"question": " ".join(sentences(text)), "noncommittal": int("know" in text)}
            )
        if keys == {"question", "context", "answer"}:
            if '"classifications"' in prompt:  # context recall, per reference sentence
                rows = [
                    {
                        "statement": s,
                        "reason": "overlap",
                        "attributed": int(supported(s, data["context"], 0.5)),
                    }
                    for s in sentences(data["answer"])
                ]
                return json.dumps({"classifications": rows})
            verdict = int(supported(data["answer"], data["context"], 0.5))  # context precision
            return json.dumps({"reason": "overlap", "verdict": verdict})
        if keys == {"text", "max_num"}:  # test set generation: keyphrases of a document
            ranked = sorted(words(data["text"]), key=lambda w: (-len(w), w))
            return json.dumps({"keyphrases": ranked[: data["max_num"]]})
        if keys == {"themes", "personas"}:  # which persona cares about which theme
            mapping = {p["name"]: data["themes"][:2] for p in data["personas"]}
            return json.dumps({"mapping": mapping})
        if {"persona", "term", "context"} <= keys:  # a question and its reference answer
            first = sentences(data["context"])[0]
            return json.dumps(
                {"query": f"What does the document say about {data['term']}?", "answer": first}
            )
        raise AssertionError(f"unexpected judge prompt with input keys {sorted(keys)}")


class GarbageJudge(_Computed):
    """A judge that never produces the JSON asked for."""

    def reply(self, prompt: str) -> str:
        return "Sure! Here is my assessment: it looks fine."

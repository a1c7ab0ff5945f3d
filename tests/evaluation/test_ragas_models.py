"""ragas' current model interfaces over LangChain models: replies parsed against the response
model, one correction round, failures that name the problem, embeddings passed through."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel, Field
from ragas.metrics.collections import Faithfulness

from rag_app.evaluation.ragas_models import (
    ChatModelLLM,
    JudgeOutputError,
    ModelEmbeddings,
    parse_reply,
)
from tests.evaluation.judge_fakes import GarbageJudge, OverlapJudge, _Computed
from tests.fakes import HashEmbeddings


class Verdict(BaseModel):
    reason: str
    verdict: int


class Scripted(_Computed):
    """Replies from a script, one per call, and keeps every prompt it was sent."""

    script: list[str] = Field(default_factory=list)
    prompts: list[str] = Field(default_factory=list)

    def reply(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.script[len(self.prompts) - 1]


@pytest.mark.parametrize(
    "reply",
    [
        '{"reason": "r", "verdict": 1}',
        'Here it is:\n```json\n{"reason": "r", "verdict": 1}\n```\nDone.',
        'Sure. {"reason": "r", "verdict": 1} Hope this helps.',
    ],
)
def test_parse_reply_finds_the_object(reply: str) -> None:
    assert parse_reply(reply, Verdict) == Verdict(reason="r", verdict=1)


def test_parse_reply_names_what_is_wrong() -> None:
    with pytest.raises(JudgeOutputError, match="contains no JSON object"):
        parse_reply("It looks fine to me.", Verdict)
    with pytest.raises(JudgeOutputError, match=r"Verdict JSON.*verdict: .*integer"):
        parse_reply('{"reason": "r", "verdict": "maybe"}', Verdict)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_bad_reply_is_corrected_once(mode: str) -> None:
    model = Scripted(
        messages=iter(()), script=["no json here", '{"reason": "ok", "verdict": 0}'], prompts=[]
    )
    llm = ChatModelLLM(model)
    if mode == "sync":
        out = llm.generate("judge this", Verdict)
    else:
        out = asyncio.run(llm.agenerate("judge this", Verdict))
    assert out == Verdict(reason="ok", verdict=0)
    assert model.calls == 2
    # the second call shows the model its own reply and what was wrong with it
    assert "no json here" in model.prompts[1] and "contains no JSON object" in model.prompts[1]


def test_a_judge_that_never_complies_raises_after_one_correction() -> None:
    model = GarbageJudge(messages=iter(()))
    with pytest.raises(JudgeOutputError, match="Verdict JSON"):
        asyncio.run(ChatModelLLM(model).agenerate("judge this", Verdict))
    assert model.calls == 2


def test_a_current_ragas_metric_scores_through_the_adapter() -> None:
    """ragas' own Faithfulness (collections) with the word-overlap judge: the supported sentence
    passes, the invented one does not."""
    metric = Faithfulness(llm=ChatModelLLM(OverlapJudge(messages=iter(()))))
    context = "Aspirin lowers the risk of heart attacks in adults over fifty."
    result = asyncio.run(
        metric.ascore(
            user_input="What does aspirin do?",
            response="Aspirin lowers the risk of heart attacks in adults. The moon is cheese.",
            retrieved_contexts=[context],
        )
    )
    assert result.value == pytest.approx(0.5)


def test_embeddings_pass_through() -> None:
    inner = HashEmbeddings()
    wrapped = ModelEmbeddings(inner)
    texts = ["alpha beta", "gamma"]
    assert wrapped.embed_text("alpha beta") == inner.embed_query("alpha beta")
    assert asyncio.run(wrapped.aembed_texts(texts)) == inner.embed_documents(texts)
    assert wrapped.embed_texts(texts) == inner.embed_documents(texts)
    assert isinstance(wrapped.model, str)


class Recording(OverlapJudge):
    """The overlap judge, recording the call arguments it was given."""

    seen: list[dict[str, object]] = Field(default_factory=list)

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        self.seen.append(dict(kw))
        return super()._generate(messages, stop, run_manager, **kw)


def test_relevancy_samples_its_questions_other_metrics_do_not() -> None:
    from rag_app.evaluation.judge import FAITHFULNESS, RELEVANCY, JudgeConfig, _metric

    judge = Recording(messages=iter(()))
    config = JudgeConfig(llm=judge, embeddings=HashEmbeddings(), label="t")
    answer = "Aspirin lowers the risk of heart attacks."
    asyncio.run(_metric(RELEVANCY, config).ascore(user_input="aspirin?", response=answer))
    assert len(judge.seen) == 3 and all(kw.get("temperature") == 0.3 for kw in judge.seen)
    judge.seen.clear()
    asyncio.run(
        _metric(FAITHFULNESS, config).ascore(
            user_input="aspirin?", response=answer, retrieved_contexts=[answer]
        )
    )
    assert judge.seen and all("temperature" not in kw for kw in judge.seen)

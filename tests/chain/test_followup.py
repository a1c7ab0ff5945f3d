"""Follow-ups joined to the previous question without a model call (chat_followup=combine)."""

from __future__ import annotations

import pytest

from rag_app.chain.followup import MAX_COMBINED_CHARS, combine, for_model, leans_on_history

PREVIOUS = "How many weeks of paid parental leave do employees get?"


@pytest.mark.parametrize(
    "message",
    [
        "And for contractors?",
        "And in tier-1 cities such as Paris?",
        "What about the HR-900?",
        "Is there a faster option, and what does it cost?",
        "Who is the secondary that week?",
        "Does that apply to them too?",
        "Why?",
        "How much?",
    ],
)
def test_a_message_that_leans_on_the_conversation_is_joined_to_the_previous_question(message):
    assert leans_on_history(message)
    assert combine(PREVIOUS, message) == f"{PREVIOUS} {message}"


@pytest.mark.parametrize(
    "message",
    [
        "Who is the primary on call in the week starting 13 October 2025?",
        "Is there a limit on hotel costs?",
        "What is the policy that covers travel?",
        "Is it possible to work from home on Fridays?",
        "How much is one night in London?",
    ],
)
def test_a_standalone_question_is_searched_as_it_is(message):
    # a change of topic must not drag the previous question into retrieval
    assert not leans_on_history(message)
    assert combine(PREVIOUS, message) == message


def test_no_previous_question_and_long_text():
    assert combine("", "And for contractors?") == "And for contractors?"
    assert combine("What is the cap", "And in Paris?") == "What is the cap? And in Paris?"
    joined = combine("word " * 200, "And for contractors?")
    assert len(joined) <= MAX_COMBINED_CHARS
    assert joined.endswith("And for contractors?")
    # the follow-up is never cut to make room for the earlier question
    assert combine(PREVIOUS, "and " + "x" * 600).startswith("and xxx")


def test_the_model_reads_the_follow_up_first_and_the_question_it_follows_after():
    assert for_model(PREVIOUS, "And for contractors?") == (
        f'And for contractors? (This follows the question: "{PREVIOUS}")'
    )
    # a question that stands on its own is shown as it is
    assert for_model(PREVIOUS, "Is there a limit on hotel costs?") == (
        "Is there a limit on hotel costs?"
    )
    assert for_model("", "And for contractors?") == "And for contractors?"

"""Follow-up questions without a model call (``chat_followup=combine``).

A follow-up such as "And for contractors?" means nothing on its own. The classic fix asks the
chat model to rewrite it as a standalone question first (``chat_followup=rewrite``), which on a
small local model costs its prompt plus ~20 generated tokens, about 2 s on 2 cores, before
retrieval can even start. Here instead:

* a message that does not lean on the conversation (no "and ..." opening, no pronoun or
  "that week" pointing back, more than a few words) is searched as it is, so a change of topic
  is not polluted by the previous one;
* a message that does is joined to the previous question (in its own standalone form, so a
  chain of follow-ups keeps its subject): "How many weeks of paid parental leave do employees
  get? And for contractors?". That text is what is searched; the answer model reads the
  follow-up with the question it follows (`for_model`), so that it answers the follow-up.

Only the user's own questions are joined, never the model's answers: an answer may be wrong,
and its words would steer retrieval towards the documents it already used.
"""

from __future__ import annotations

import re

MAX_COMBINED_CHARS = 500

# Openings that continue the previous question ("And for contractors?", "What about Paris?").
_CONTINUES = re.compile(
    r"^\s*(?:and|also|but|so|then|or|what about|how about|same for|and what about|"
    r"what if|in that case|if so)\b",
    re.IGNORECASE,
)
# Words that point back at something said before. "that" and "this" only as a determiner
# ("that week") or on their own at the end ("What about this?"): as a relative pronoun ("the
# policy that covers travel") they point at nothing.
_POINTS_BACK = re.compile(
    r"\b(?:it|its|it's|itself|these|those|they|them|their|theirs|he|him|his|she|her|hers|"
    r"same|such|former|latter|above|previous|earlier|other|else|too|either|instead)\b"
    r"|\b(?:that|this)\s+(?:week|day|month|year|period|date|one|case|document|policy|plan|"
    r"level|band|city|role|team|product|model|option|service|form|rule|person|role)\b"
    r"|\b(?:that|this)\s*[?.!]?\s*$",
    re.IGNORECASE,
)
# "Is it possible to ...?", "it is allowed": an "it" that stands for nothing.
_DUMMY_IT = re.compile(
    r"\b(?:(?:is|was|will|would)\s+it(?:\s+be)?|it(?:'s|\s+is|\s+was))\s+(?:possible|"
    r"allowed|ok|okay|true|necessary|required|mandatory|permitted|acceptable)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’\-]*")
# A question this short ("Why?", "How much?", "Since when?") needs the one before it.
SHORT_WORDS = 3


def leans_on_history(message: str) -> bool:
    """Whether `message` needs the conversation to be understood."""
    if _CONTINUES.search(message) or _POINTS_BACK.search(_DUMMY_IT.sub(" ", message)):
        return True
    return len(_WORD.findall(message)) <= SHORT_WORDS


def combine(previous: str, message: str) -> str:
    """`message` as a standalone question: joined to `previous` when it leans on it."""
    message = " ".join(message.split())
    previous = " ".join((previous or "").split())
    if not previous or not leans_on_history(message):
        return message
    if previous[-1] not in ".?!":
        previous += "?"
    joined = f"{previous} {message}"
    if len(joined) <= MAX_COMBINED_CHARS:
        return joined
    # keep the follow-up whole and as much of the earlier question as fits, from its end
    room = MAX_COMBINED_CHARS - len(message) - 1
    if room <= 0:
        return message[:MAX_COMBINED_CHARS]
    return f"{previous[-room:].lstrip()} {message}"


def for_model(previous: str, message: str) -> str:
    """How the answer model reads a joined follow-up: the follow-up first, then the question
    it follows. Given the joined text itself ("What is the merit budget? And what is the
    salary band for L4?") a 1.5B model answered both, and made the second one up."""
    previous = " ".join((previous or "").split())
    if not previous or not leans_on_history(message):
        return message
    return f'{" ".join(message.split())} (This follows the question: "{previous}")'


__all__ = ["MAX_COMBINED_CHARS", "combine", "for_model", "leans_on_history"]

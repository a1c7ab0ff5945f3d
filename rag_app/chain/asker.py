"""Who "I" is: the logged-in user's name added to first-person questions.

"What merit increase did I get?" finds nothing about the asker on its own; with the name
("... (I am Alice Moreau.)") retrieval finds the review with that name on it and the model
knows whose it is. Only the wording changes: what the user may read is decided by the
`Principal`'s tenant and groups as always (``display_name`` is never used for access).
"""

from __future__ import annotations

import re

from rag_app.access.permissions import Principal

_FIRST_PERSON = re.compile(r"\b(?:i|me|my|mine|myself)\b", re.IGNORECASE)  # also "I'm", "I've"
_NOTE = re.compile(r"\s*\(I am [^()]{1,80}\.\)$")


def personal(question: str, principal: Principal) -> str:
    """The question with the asker's name when it speaks of them ("What merit increase did
    I get?" -> "... (I am Alice Moreau.)"), so that retrieval finds their own documents and
    the model knows whose they are; other questions are returned as they are."""
    name = " ".join((principal.display_name or "").split())[:80]
    if not name or not _FIRST_PERSON.search(question):
        return question
    return f"{question} (I am {name}.)"


def without_asker(question: str) -> str:
    """`question` without the note `personal` added (if any)."""
    return _NOTE.sub("", question)


__all__ = ["personal", "without_asker"]

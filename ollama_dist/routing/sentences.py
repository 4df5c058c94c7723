"""How an instruction reads, sentence by sentence: what each sentence opens with, whether it asks,
and which sentence governs the whole (the first that instructs or asks; what comes before it is
context: a title, a heading, a statement about the situation).

Pure text functions, read by the rules (routing/rules.py).
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"```.*?(```|$)", re.DOTALL)
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|\n+")
_BULLET = re.compile(r"^\s*(?:\d+[.)]|[-*•>#]+)\s*")
_WORD = re.compile(r"[a-z][a-z'-]*")
_FILLERS = frozenset("please now then also and just first finally next so kindly simply".split())
_SETTINGS = frozenset("given using from for in with based across on within after before".split())
_ASKING = frozenset(("is are does do did should would could can will which why how what when where who whether "
                     "isn't doesn't shouldn't won't can't what's how's").split())
_REQUESTS = [[aux, "you"] for aux in ("can", "could", "would", "will")]
_PRONOUNS = [[w] for w in "i we you they it this that these those there".split()]
# A sentence opening with one of these states the situation; it governs nothing (governing_lead).
_CONTEXT = frozenset(("we we're we've we'd we'll our i i'm i've i'd my this these the here here's there it it's "
                      "its you're your they they're their a an").split())


def sentence_leads(prompt: str) -> list[tuple[str, bool]]:
    """(first word, asks a question) of every sentence of an instruction, code blocks left out.

    The first word skips fillers ("please", "now", a bullet), a polite "can you" and a leading
    setting clause up to its comma ("Given the table below, extract ..." -> extract). A sentence
    asks when it ends with "?" or opens with a question word; "do" asks only before a pronoun
    ("Do we ..."), so "Do the same for ..." and "Do not ..." are told, not asked."""
    return [(word, asked) for word, asked, _ in _sentences(prompt)]


def governing_lead(prompt: str, verbs: frozenset[str]) -> str | None:
    """The word that governs an instruction: the first word of its first sentence that instructs
    (opens with one of `verbs`) or asks. A sentence that opens otherwise is context: a title ("Risk
    assessment of the billing consumer lag."), a heading ("Legal review prep:"), a statement about the
    situation ("Counsel will assess the terms.", "This is our GDPR export."). So in "Security audit
    prep: extract every IP as JSON" the instruction is governed by "extract", not by its topic.
    Where no sentence instructs or asks, the first that is neither a heading nor a statement."""
    sentences = _sentences(prompt)
    for word, asked, _ in sentences:
        if asked or word in verbs:
            return word
    for word, asked, ends_colon in sentences:
        heading = ends_colon and word not in _ASKING
        stated = word in _CONTEXT and not asked
        if not (heading or stated):
            return word
    return sentences[0][0] if sentences else None


def _sentences(prompt: str) -> list[tuple[str, bool, bool]]:
    """(first word, asks a question, ends with a colon) of every sentence: see sentence_leads."""
    out = []
    for sentence in _SENTENCE.split(_FENCE.sub(" ", prompt)):
        sentence = _BULLET.sub("", sentence).strip().lower()
        words = _WORD.findall(sentence)
        while words and words[0] in _FILLERS:
            words = words[1:]
        if words[:2] in _REQUESTS:  # "could you convert this?" is a request
            words = [w for w in words[2:] if w != "please"]
            if words:
                out.append((words[0], False, sentence.endswith(":")))
            continue
        if not words:
            continue
        if words[0] in _SETTINGS and "," in sentence:
            after = _WORD.findall(sentence.split(",", 1)[1])
            words = after or words
        asked = words[0] in _ASKING and (words[0] != "do" or words[1:2] in _PRONOUNS)
        out.append((words[0], sentence.endswith("?") or asked, sentence.endswith(":")))
    return out


def asking_sentences(prompt: str) -> list[str]:
    """The sentences of an instruction that ask a question (lower case, code blocks left out)."""
    out = []
    for sentence in _SENTENCE.split(_FENCE.sub(" ", prompt)):
        read = _sentences(sentence)
        if read and read[0][1]:
            out.append(sentence.lower())
    return out

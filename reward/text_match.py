"""WebArena's string rules as pure functions: answer normalisation, exact_match, must_include.

Semantics follow WebArena's ``StringEvaluator`` (read, not copied):

- normalisation: strip surrounding whitespace, then one pair of surrounding quotes (``'...'`` or
  ``"..."``), then lower-case;
- exact_match: the normalised strings are equal;
- must_include: the normalised reference is a substring of the normalised answer. When a
  must_include list has a single item of a single character (``"0"``, ``"5"``), the answer is split
  into words and the reference must be one of them, so that ``"0"`` does not match ``"10"``;
- ``|OR|`` inside one reference lists alternatives; any one of them satisfies it (WebArena applies
  this to program_html's must_include; we apply it to every exact_match and must_include reference).
"""

from __future__ import annotations

import re

OR_SEPARATOR = "|OR|"

# a run of word characters with the punctuation inside it (1,000  3.5  5-6  a/b), or any other
# character on its own: WebArena tokenizes with NLTK's word_tokenize, which peels punctuation off the
# edges of whitespace-separated chunks and keeps it inside them; this is that, without NLTK
_EDGE_PUNCT = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)


def normalize(text: str) -> str:
    """WebArena's ``clean_answer``: strip, drop one pair of surrounding quotes, lower-case."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return text.lower()


def alternatives(reference: str) -> list[str]:
    """``"65 |OR| 3"`` -> ``["65", "3"]``: the alternatives one reference accepts."""
    return [part.strip() for part in reference.split(OR_SEPARATOR)] if OR_SEPARATOR in reference else [reference]


def words(text: str) -> list[str]:
    """Split ``text`` like NLTK's ``word_tokenize`` does for our purpose: whitespace-separated chunks
    with their leading and trailing punctuation as separate tokens (``"($5)."`` -> ``( $ 5 ) .``);
    punctuation inside a chunk stays (``1,000``, ``3.5``, ``5-6``)."""
    tokens: list[str] = []
    for chunk in text.split():
        lead, core, trail = _EDGE_PUNCT.match(chunk).groups()
        tokens.extend(lead)
        if core:
            tokens.append(core)
        tokens.extend(trail)
    return tokens


def exact_match(reference: str, answer: str) -> bool:
    """The normalised answer equals the normalised reference (or one of its ``|OR|`` alternatives)."""
    got = normalize(answer)
    return any(got == normalize(ref) for ref in alternatives(reference))


def must_include(reference: str, answer: str, *, whole_word: bool = False) -> bool:
    """The normalised reference (or one of its ``|OR|`` alternatives) occurs in the normalised answer.
    ``whole_word``: a one-character reference must be a whole token of the answer (WebArena sets it
    when the must_include list has one item)."""
    got = normalize(answer)
    for ref in alternatives(reference):
        want = normalize(ref)
        if whole_word and len(want) == 1:
            if want in words(got):
                return True
        elif want in got:
            return True
    return False


def as_list(value: str | list[str]) -> list[str]:
    """A reference list as WebArena writes it; a bare string (one config does that) is one item."""
    return [value] if isinstance(value, str) else list(value)

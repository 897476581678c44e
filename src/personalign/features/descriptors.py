"""Interpretable text descriptors that name what a learned direction tracks: length, readability, sentiment and
simple formality proxies.

Readability is textstat's Flesch reading ease, sentiment VADER's compound score (vaderSentiment); a descriptor
whose library is not installed (or fails on this machine, e.g. a missing word list) is left out, never an error.
The formality proxies are counts anybody can check by eye, not a trained classifier:

- ``contractions``: share of words with an inner apostrophe (``don't``, ``it's``): casual writing uses them.
- ``first_person``: share of words that are I / me / my / mine / myself / we / us / our / ours / ourselves
  (also contracted: I'm, we're).
- ``exclamations``: exclamation marks per sentence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

WORD = re.compile(r"[A-Za-z]+(?:['\u2019][A-Za-z]+)*")
CONTRACTION = re.compile(r"[A-Za-z]['\u2019][A-Za-z]")
APOSTROPHE = re.compile(r"['\u2019]")
SENTENCE_END = re.compile(r"[.!?]+")
FIRST_PERSON = frozenset("i me my mine myself we us our ours ourselves".split())

DESCRIPTORS: dict[str, str] = {
    "words": "length in words",
    "reading_ease": "Flesch reading ease (textstat; higher is easier to read)",
    "sentiment": "VADER compound sentiment (vaderSentiment; -1 negative .. +1 positive)",
    "contractions": "share of words that are contractions (casual style)",
    "first_person": "share of words in the first person (I, me, we, ...)",
    "exclamations": "exclamation marks per sentence",
}
"""Descriptor name -> what it measures (the columns :func:`text_descriptors` may return)."""

# how a descriptor reads in a sentence: (more of it, less of it)
WORDING: dict[str, tuple[str, str]] = {
    "words": ("longer", "shorter"),
    "reading_ease": ("easier to read", "harder to read"),
    "sentiment": ("more positive", "more negative"),
    "contractions": ("more casual", "more formal"),
    "first_person": ("more personal", "more impersonal"),
    "exclamations": ("more exclamatory", "calmer"),
}


def _words(text: str) -> list[str]:
    return WORD.findall(text)


def _share(text: str, test: Callable[[str], bool]) -> float:
    words = _words(text)
    return float(np.mean([test(w) for w in words])) if words else 0.0


def _exclamations(text: str) -> float:
    sentences = [s for s in SENTENCE_END.split(text) if s.strip()]
    return text.count("!") / max(len(sentences), 1)


@lru_cache(maxsize=1)
def _library_scorers() -> dict[str, Callable[[str], float]]:
    """The descriptors from libraries that are installed and work here (checked once on a probe text)."""
    out: dict[str, Callable[[str], float]] = {}
    try:
        import textstat

        out["reading_ease"] = lambda t: float(textstat.flesch_reading_ease(t))
    except ImportError:
        pass
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        analyzer = SentimentIntensityAnalyzer()
        out["sentiment"] = lambda t: float(analyzer.polarity_scores(t)["compound"])
    except ImportError:
        pass
    probe = "This is a short test. It should work!"
    for name in list(out):
        try:
            out[name](probe)
        except Exception:  # a library that cannot run here (missing data files...) is skipped, not fatal
            del out[name]
    return out


def available_descriptors() -> list[str]:
    """The descriptors :func:`text_descriptors` computes on this machine (in :data:`DESCRIPTORS` order)."""
    lib = _library_scorers()
    return [d for d in DESCRIPTORS if d in lib or d not in ("reading_ease", "sentiment")]


@lru_cache(maxsize=50_000)
def _describe_one(text: str) -> tuple[float, ...]:
    lib = _library_scorers()
    values = {
        "words": float(len(_words(text))),
        "contractions": _share(text, lambda w: bool(CONTRACTION.search(w))),
        # "I'm", "we're": the word before the apostrophe decides
        "first_person": _share(text, lambda w: APOSTROPHE.split(w.lower())[0] in FIRST_PERSON),
        "exclamations": _exclamations(text),
    }
    for name, f in lib.items():
        try:
            values[name] = f(text) if text.strip() else float("nan")
        except Exception:  # one text a library cannot score gets no value, the rest still do
            values[name] = float("nan")
    return tuple(values.get(d, float("nan")) for d in available_descriptors())


def text_descriptors(texts: Sequence[str]) -> pd.DataFrame:
    """One row per text, one column per available descriptor (see :data:`DESCRIPTORS`)."""
    cols = available_descriptors()
    rows = [_describe_one(str(t)) for t in texts]
    return pd.DataFrame(rows, columns=cols, dtype=np.float64) if rows else pd.DataFrame(columns=cols)

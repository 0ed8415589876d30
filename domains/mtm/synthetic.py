"""A generated fact-checking collection (claims, articles of sentences, qrels) for tests and the no-data demo.

Each article debunks one "event" (a few topic words). Its sentences mix a quote of the claim (event
information), a template sentence ("we rated this claim false", pattern information) and filler about
other events, so BM25 is good but not perfect and key-sentence selection has something to find.
"""

from __future__ import annotations

import random

from polyrank.domains.mtm.data import SPLITS, FactCheckData

_WORDS = ("vaccine senator tax border climate election virus water bank school police market oil farm city "
          "army court doctor energy phone river bridge prison ocean wheat coal storm island train rocket "
          "mayor governor budget wage housing airport hospital factory forest desert crime nurse judge").split()
_TEMPLATES = ("we rated this claim false", "the viral post is misleading", "our ruling is pants on fire",
              "there is no evidence for the claim", "experts say the statement is wrong")


def synthetic_factcheck(n_claims: int = 60, n_articles: int = 30, seed: int = 0) -> FactCheckData:
    """``n_claims`` claims, each debunked by one of ``n_articles`` articles; split 60/20/20 by claim."""
    rng = random.Random(seed)
    events = [rng.sample(_WORDS, 3) for _ in range(n_articles)]
    articles = {}
    for a, event in enumerate(events):
        other = events[(a + 1) % n_articles]
        sentences = [f"the {other[0]} report mentions {other[1]} and {other[2]}",
                     f"a post claims the {event[0]} {event[1]} story about {event[2]}",
                     rng.choice(_TEMPLATES),
                     f"officials discussed {rng.choice(_WORDS)} and {rng.choice(_WORDS)} today",
                     f"the {rng.choice(_WORDS)} budget was approved"]
        rng.shuffle(sentences)
        articles[f"d{a:03d}"] = sentences
    claims, qrels = {}, {}
    for q in range(n_claims):
        a = q % n_articles
        event = events[a]
        noise = rng.sample(_WORDS, 2)
        claims[f"q{q:03d}"] = f"breaking {event[0]} {event[1]} news {noise[0]} {event[2]} {noise[1]} shocking"
        qrels[f"q{q:03d}"] = {f"d{a:03d}": 1}
    qids = sorted(claims)
    rng.shuffle(qids)
    cut1, cut2 = int(0.6 * n_claims), int(0.8 * n_claims)
    splits = dict(zip(SPLITS, (sorted(qids[:cut1]), sorted(qids[cut1:cut2]), sorted(qids[cut2:]))))
    data = FactCheckData("synthetic", claims, articles, qrels, splits)
    data.notes.append("generated data: claims quote topic words of their debunking article")
    return data

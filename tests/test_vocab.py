"""Tests of the mission vocabulary and the instruction transforms (``trajbench.vocab``)."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trajbench.vocab import (
    ARTICLES,
    CONTENT_WORDS,
    MASKS,
    SPECIALS,
    MissionVocab,
    mission_key,
    shown_mission,
    template,
    words,
)

MISSION_WORDS = [*CONTENT_WORDS, *ARTICLES, "go", "to", "pick", "up", "next", "put", "you"]


def test_mission_vocabulary_round_trip_and_unknown_words():
    missions = ["go to the red ball", "pick up a blue key behind you", "open the door on your left"]
    vocab = MissionVocab.build(reversed(missions))
    assert vocab.itos == MissionVocab.build(missions).itos, "ids do not depend on the order"
    assert vocab.itos[: len(SPECIALS)] == list(SPECIALS)
    for m in missions:
        ids = vocab.encode(m)
        assert ids[0] == vocab.bos_id and vocab.unk_id not in ids
        assert vocab.decode(ids[1:]) == m
        assert vocab.encode(template(m)).count(vocab.unk_id) == 0  # masks are in every vocab
    assert vocab.encode("Go to the RED ball!") == vocab.encode("go to the red ball")
    assert vocab.encode("go to the green box")[-2:] == [vocab.unk_id] * 2
    assert vocab.unknown_words(["go to the green box"]) == {"green", "box"}
    again = MissionVocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again.itos == vocab.itos and again.encode(missions[1]) == vocab.encode(missions[1])
    assert vocab.encode("") == [vocab.bos_id]
    assert len(vocab) == len(SPECIALS) + len({w for m in missions for w in words(m)})


def test_bad_vocabularies_raise():
    with pytest.raises(ValueError, match="special tokens"):
        MissionVocab(["go", "to"])
    with pytest.raises(ValueError, match="duplicate"):
        MissionVocab([*SPECIALS, "go", "go"])


def test_words_drop_punctuation_and_keep_masks():
    assert words("Go to the <color> ball, then: PICK it up.") == [
        "go",
        "to",
        "the",
        "<color>",
        "ball",
        "then",
        "pick",
        "it",
        "up",
    ]


@given(st.lists(st.sampled_from(MISSION_WORDS), max_size=9))
def test_template_masks_exactly_the_content_words(ws):
    mission = " ".join(ws)
    shown = template(mission).split()
    assert len(shown) == len(ws)
    for w, t in zip(ws, shown, strict=True):
        assert (t in MASKS) == (w in CONTENT_WORDS)  # content words masked, nothing else
        assert t == CONTENT_WORDS.get(w, w)
    assert template(template(mission)) == template(mission)


@given(st.lists(st.sampled_from(MISSION_WORDS), max_size=9), st.data())
def test_mission_key_ignores_articles_case_and_punctuation(ws, data):
    mission = " ".join(ws)
    # Swap every article for any article, shout it, punctuate it: the key stays.
    other = " ".join(
        data.draw(st.sampled_from(sorted(ARTICLES))) if w in ARTICLES else w for w in ws
    )
    assert mission_key(other.upper() + ".") == mission_key(mission)
    assert mission_key(mission) == tuple(w for w in ws if w not in ARTICLES)
    # Any other word changes it.
    assert mission_key(mission + " red") == (*mission_key(mission), "red")


def test_shown_mission_modes():
    pool = ["go to the red ball", "go to a red ball", "go to the blue key", "go to the grey box"]
    rng = random.Random(0)
    assert shown_mission(pool[0], "full", pool, rng) == pool[0]
    assert shown_mission(pool[0], "empty", pool, rng) == ""
    assert shown_mission(pool[0], "template", pool, rng) == "go to the <color> <obj>"
    wrong = {shown_mission(pool[0], "wrong", pool, rng) for _ in range(80)}
    assert wrong == set(pool[2:]), "never the same mission up to its articles"
    assert {shown_mission(pool[2], "wrong", pool, rng) for _ in range(80)} == {*pool[:2], pool[3]}
    with pytest.raises(ValueError, match="different mission"):
        shown_mission(pool[0], "wrong", pool[:2], rng)
    with pytest.raises(ValueError, match="unknown instruction mode 'loud'"):
        shown_mission(pool[0], "loud", pool, rng)

"""Word-level mission vocabulary and the instruction transforms of the ablation.

Missions are short templated sentences ("go to the red ball"), so a word-level vocabulary built
from the suite's own missions covers them with no download. The instruction modes change what the
model reads, never what the environment asks:

- ``full``: the episode's own mission;
- ``empty``: nothing (the episode still starts with ``<bos>``);
- ``template``: content words masked by their category — "go to the <color> <obj>";
- ``wrong``: another mission of the same family that differs from the true one in more than its
  articles (BabyAI's grammar has no synonyms); only the query shows it. Evaluation's conflict test
  instead shows a mission naming another object present in the level (the families' decoys).

Example:
    >>> vocab = MissionVocab.build(["go to the red ball", "pick up the blue key"])
    >>> vocab.decode(vocab.encode(template("go to the red ball")))
    '<bos> go to the <color> <obj>'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

INSTRUCTIONS = ("full", "empty", "template", "wrong")

PAD_WORD, BOS_WORD, UNK_WORD = "<pad>", "<bos>", "<unk>"
#: Content words of MiniGrid / BabyAI missions and the mask that replaces each in ``template``.
CONTENT_WORDS: dict[str, str] = {
    **dict.fromkeys(["red", "green", "blue", "purple", "yellow", "grey"], "<color>"),
    **dict.fromkeys(["ball", "box", "key", "door", "goal", "square", "object", "lava"], "<obj>"),
    **dict.fromkeys(["left", "right", "front", "behind"], "<loc>"),
}
MASKS = ("<color>", "<obj>", "<loc>")
SPECIALS = (PAD_WORD, BOS_WORD, UNK_WORD, *MASKS)


def words(mission: str) -> list[str]:
    """Lower-cased words of a mission (punctuation dropped); masks like ``<obj>`` survive."""
    return re.findall(r"<[a-z]+>|[a-z]+", mission.lower())


ARTICLES = frozenset({"a", "an", "the"})


def mission_key(mission: str) -> tuple[str, ...]:
    """What a mission says, up to its articles: two missions with one key name the same thing.

    Example:
        >>> mission_key("go to a red ball") == mission_key("Go to the red ball.")
        True
    """
    return tuple(w for w in words(mission) if w not in ARTICLES)


def template(mission: str) -> str:
    """The mission with its content words replaced by their category mask."""
    return " ".join(CONTENT_WORDS.get(w, w) for w in words(mission))


def shown_mission(mission: str, instruction: str, pool: list[str], rng) -> str:
    """The mission as instruction mode ``instruction`` shows it.

    Args:
        mission: The episode's true mission.
        instruction: One of :data:`INSTRUCTIONS`.
        pool: Missions of the family's levels, the source of ``wrong`` missions.
        rng: A ``random.Random`` used to draw the ``wrong`` mission.
    """
    if instruction == "full":
        return mission
    if instruction == "empty":
        return ""
    if instruction == "template":
        return template(mission)
    if instruction == "wrong":
        key = mission_key(mission)
        others = sorted({m for m in pool if mission_key(m) != key})
        if not others:
            raise ValueError("the 'wrong' instruction needs a different mission in the pool")
        return others[rng.randrange(len(others))]
    raise ValueError(f"unknown instruction mode {instruction!r}; expected one of {INSTRUCTIONS}")


class MissionVocab:
    """Maps mission words to ids; ids 0..len(SPECIALS)-1 are the special tokens.

    Args:
        vocabulary: Words in id order, starting with :data:`SPECIALS`.
    """

    def __init__(self, vocabulary: list[str]):
        if tuple(vocabulary[: len(SPECIALS)]) != SPECIALS:
            raise ValueError("a mission vocabulary must start with the special tokens")
        self.itos = list(vocabulary)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("duplicate words in mission vocabulary")
        self.pad_id = self.stoi[PAD_WORD]
        self.bos_id = self.stoi[BOS_WORD]
        self.unk_id = self.stoi[UNK_WORD]

    @classmethod
    def build(cls, missions: Iterable[str]) -> MissionVocab:
        """Vocabulary of every word in ``missions`` (sorted, so the ids are reproducible)."""
        found = {w for m in missions for w in words(m)}
        return cls([*SPECIALS, *sorted(found - set(SPECIALS))])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, mission: str) -> list[int]:
        """``<bos>`` followed by the ids of the mission's words (unknown words -> ``<unk>``)."""
        return [self.bos_id, *(self.stoi.get(w, self.unk_id) for w in words(mission))]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.itos[i] for i in ids)

    def unknown_words(self, missions: Iterable[str]) -> set[str]:
        """Words of ``missions`` that this vocabulary does not know."""
        return {w for m in missions for w in words(m) if w not in self.stoi}

    def to_dict(self) -> dict:
        return {"words": self.itos}

    @classmethod
    def from_dict(cls, data: dict) -> MissionVocab:
        return cls(list(data["words"]))

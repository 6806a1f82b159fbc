"""The text track's contexts: the prompt builder's rows written as text, tested by what they show.

Every mode's rows show the store's own steps (read here from the store, not from the batch), and
the protocol's invariants hold on the text: every mode shows the same query, the same mission and
the same number of segments and lines; ``shuffled`` shows ``bursty``'s lines in another order;
``none`` shows no context; ``empty`` shows no mission.
"""

from __future__ import annotations

from collections import Counter
from itertools import chain

import numpy as np
import pytest
from contexts_support import PROPS, build, collected_store, knobs, make_store, seeds, store_params
from hypothesis import given, settings
from hypothesis import strategies as st

from trajbench.contexts import MODE_NAMES
from trajbench.envs.dark_key_to_door import DarkKeyToDoorEnv
from trajbench.errors import TrajbenchError
from trajbench.text import SEGMENT, TextContextBuilder, TextFormat, reward_text
from trajbench.vocab import INSTRUCTIONS, mission_key

FEW = settings(PROPS, max_examples=12)  # an example builds every mode: keep the file fast
#: The random stores' observations are (x, y, 0..2) with 5 actions: read them as Key-to-Door.
FMT = TextFormat(DarkKeyToDoorEnv.obs_text, DarkKeyToDoorEnv.action_words)


def text_rows(store, mode, n, seed, **kw):
    """``n`` text rows of ``mode`` (None where the store serves no query), and the batch."""
    if build(store, mode=mode, **kw) is None:
        return None, None
    tb = TextContextBuilder(store, seed=7, mode=mode, text_format=FMT, **kw)
    return tb.sample(n, seed=seed), tb.builder.sample(n, seed=seed)


def split(text: str) -> tuple[str, list[list[str]], str]:
    """A row's header, its context segments (lists of lines) and its query."""
    header, *segments = text.split(SEGMENT)
    return header, [s.splitlines() for s in segments[:-1]], segments[-1]


def store_line(store, episode_id: int, t: int) -> str:
    """Step ``t`` of episode ``episode_id`` as a context line, from the store's own arrays."""
    eps = store.episodes.set_index("episode_id")
    g = int(eps.loc[episode_id, "offset"]) + t
    obs, action, reward = store.obs[g], int(store.actions[g]), float(store.rewards[g])
    return f"{FMT.obs_text(obs)}: {FMT.action_words[action]}, reward {reward_text(reward)}"


def test_the_format_by_hand():
    assert [reward_text(r) for r in (0.0, 1.0, 0.956, -0.0, 0.5)] == ["0", "1", "0.96", "0", "0.5"]
    segment = FMT.segment([np.array([1, 2, 0]), np.array([1, 3, 1])], [2, 4], [1.0, 0.0])
    assert segment == (
        "Episode:\nat (1, 2), no key: down, reward 1\nat (1, 3), holding the key: right, reward 0\n"
    )
    assert FMT.query_start("") == "Episode:\n"
    assert FMT.query_start("go to the red ball") == "Episode:\nMission: go to the red ball\n"
    assert FMT.header() == "Actions: stay, up, down, left, right.\n"


@FEW
@given(store_params, knobs, seeds, st.sampled_from(MODE_NAMES))
def test_rows_show_the_stores_steps_and_the_querys_actions_as_targets(params, kw, seed, mode):
    store = make_store(**params)
    rows, batch = text_rows(store, mode, 8, seed, **kw)
    if rows is None:
        return
    for r, row in enumerate(rows):
        header, segments, query = split(row.text)
        assert header == FMT.header()
        steps = np.flatnonzero((batch.kind[r] == 2) & ~batch.is_query[r])
        shown = [line for seg in segments for line in seg]
        expected = [store_line(store, batch.episode_id[r, j], batch.t[r, j]) for j in steps]
        assert shown == expected
        q = np.flatnonzero(batch.loss_mask[r])
        assert row.actions == batch.target[r, q].tolist()
        assert [row.text[a:b] for a, b in row.spans()] == [
            f" {FMT.action_words[a]}" for a in row.actions
        ]
        # Each query line: the step's observation, its action, then the reward the store holds.
        qlines = [line for line in query.splitlines() if not line.startswith("Mission: ")]
        want = [store_line(store, batch.episode_id[r, j], batch.t[r, j]) for j in q]
        assert qlines[:-1] == want[:-1]
        assert want[-1].startswith(qlines[-1])  # the last step's reward is never shown


@FEW
@given(store_params, knobs, seeds, st.sampled_from(INSTRUCTIONS))
def test_every_mode_shows_the_same_query_and_the_same_shape(params, kw, seed, instruction):
    store = make_store(**params)
    kw = {**kw, "instruction": instruction}
    try:
        build(store, mode="bursty", **kw)
    except TrajbenchError:  # a store without two distinct missions refuses 'wrong'
        assert instruction == "wrong"
        return
    by_mode = {}
    for mode in MODE_NAMES:
        rows, _ = text_rows(store, mode, 16, seed, **kw)
        if rows is None:
            return
        by_mode[mode] = [split(row.text) for row in rows]
    k = kw["k"]
    for r in range(16):
        queries = {by_mode[m][r][2] for m in MODE_NAMES}
        assert len(queries) == 1  # the same query and mission in every mode
        sizes = {m: [len(s) for s in by_mode[m][r][1]] for m in MODE_NAMES}
        assert sizes["none"] == []
        assert all(sizes[m] == sizes["bursty"] for m in MODE_NAMES[:4])
        # One segment per context episode (a segment the step cap empties shows no delimiter).
        n_segments = len(sizes["bursty"])
        assert n_segments == k if kw["context_steps"] is None else n_segments <= k
        bursty, shuffled = by_mode["bursty"][r][1], by_mode["shuffled"][r][1]
        assert Counter(chain(*bursty)) == Counter(chain(*shuffled))
        query = queries.pop()
        has_mission = query.startswith("Mission: ")
        if instruction == "empty":
            assert not has_mission


def test_missions_as_the_instruction_says(tmp_path_factory):
    """On a BabyAI store: ``full`` shows the query episode's mission, ``empty`` none, ``wrong``
    another mission of the family (not the same up to articles), ``template`` one with masks."""
    store = collected_store(tmp_path_factory, "trajbench/GoToLocal-v1", levels="0,1,2,3,4,5")
    missions = set(store.episodes["mission"])
    shown = {}
    for instruction in INSTRUCTIONS:
        tb = TextContextBuilder(store, k=1, instruction=instruction, seed=3)
        batch = tb.builder.sample(12, seed=5)
        rows = tb.sample(12, seed=5)
        eps = store.episodes.set_index("episode_id")
        for r, row in enumerate(rows):
            query = split(row.text)[2]
            first = query.splitlines()[0]
            q = np.flatnonzero(batch.loss_mask[r])[0]
            own = eps.loc[int(batch.episode_id[r, q]), "mission"]
            said = first.removeprefix("Mission: ") if first.startswith("Mission: ") else None
            shown.setdefault(instruction, []).append((own, said))
    assert all(said == own for own, said in shown["full"])
    assert all(said is None for _, said in shown["empty"])
    assert all(
        said in missions and mission_key(said) != mission_key(own) for own, said in shown["wrong"]
    )
    assert all(said != own and "<" in said for own, said in shown["template"])


@pytest.mark.parametrize("env_id", ["trajbench/DarkRoom-v0", "trajbench/DoorKey-v1"])
def test_a_collected_store_reads_in_its_familys_words(tmp_path_factory, env_id):
    store = collected_store(tmp_path_factory, env_id)
    rows = TextContextBuilder(store, k=2, seed=0).sample(4, seed=1)
    words = TextFormat.of(store.encoding).action_words
    assert all(row.text.startswith(f"Actions: {', '.join(words)}.\n") for row in rows)
    assert all(row.text.count(SEGMENT) == 3 for row in rows)
    assert all(a in range(len(words)) for row in rows for a in row.actions)

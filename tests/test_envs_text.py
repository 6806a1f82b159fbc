"""The text track's rendering of every family: observations and actions in words.

Every registered family names its actions and reads its encoded observations as text
(``obs_text``); the text is deterministic, short, and tells apart the observations that the
rendering says it tells apart (checked against a projection of the encoding computed here).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

import trajbench  # noqa: F401  (registers the families)
from trajbench.collect import rollout
from trajbench.envs import encoding_family, env_ids
from trajbench.envs.dark_key_to_door import DarkKeyToDoorEnv
from trajbench.envs.dark_room import DarkRoomEnv
from trajbench.envs.demonstrators import Demonstrator
from trajbench.envs.minigrid_text import minigrid_obs_text

pytestmark = pytest.mark.filterwarnings("ignore:.*is out of date:DeprecationWarning")
WALL, EMPTY, UNSEEN = OBJECT_TO_IDX["wall"], OBJECT_TO_IDX["empty"], OBJECT_TO_IDX["unseen"]


def minigrid_projection(obs: np.ndarray) -> tuple:
    """What the MiniGrid text says, read off the encoding without the renderer: the direction,
    the carried cell, the first wall on each of the three lines from the agent, and every object
    (not unseen, empty or wall) with its cell; a goal/lava/floor's colour is not said."""
    view = obs[:-1].reshape(7, 7, 3).astype(int)

    def thing(o: int, c: int, s: int) -> tuple:
        colourless = o in (OBJECT_TO_IDX["goal"], OBJECT_TO_IDX["lava"], OBJECT_TO_IDX["floor"])
        return o, None if colourless else c, s if o == OBJECT_TO_IDX["door"] else None

    carried = thing(*view[3, 6]) if view[3, 6, 0] not in (UNSEEN, EMPTY) else None
    lines = ([(3, y) for y in range(5, -1, -1)], [(x, 6) for x in range(2, -1, -1)])
    lines += ([(x, 6) for x in range(4, 7)],)
    walls = tuple(
        next((d for d, (x, y) in enumerate(cells) if view[x, y, 0] == WALL), None)
        for cells in lines
    )
    objects = set()
    for x in range(7):
        for y in range(7):
            if (x, y) != (3, 6) and view[x, y, 0] not in (UNSEEN, EMPTY, WALL):
                objects.add((x, y, *thing(*view[x, y])))
    return int(obs[-1]), carried, walls, frozenset(objects)


def random_views(n: int, seed: int) -> np.ndarray:
    """MiniGrid views with few objects on an empty floor: random walls, doors, keys, balls, goals,
    in random colours and states, plus a random direction."""
    rng = np.random.default_rng(seed)
    kinds = [WALL, *(OBJECT_TO_IDX[k] for k in ("door", "key", "ball", "box", "goal", "lava"))]
    views = np.zeros((n, 148), np.uint8)
    for v in views:
        cells = v[:-1].reshape(7, 7, 3)
        cells[:, :, 0] = EMPTY
        for _ in range(rng.integers(0, 4)):
            x, y = rng.integers(7), rng.integers(7)
            cells[x, y] = rng.choice(kinds), rng.integers(len(COLOR_TO_IDX)), rng.integers(3)
        v[-1] = rng.integers(4)
    return views


def family_episode(env_id: str, seed: int = 0):
    env = gym.make(env_id)
    level = int(env.unwrapped.splits()["test"][0])
    demo = Demonstrator("noisy", env, np.random.default_rng(seed), 0.3)
    return env.unwrapped, rollout(env, demo, level, seed)


@pytest.mark.parametrize("env_id", env_ids())
def test_every_family_reads_its_observations_and_actions_as_text(env_id):
    family, ep = family_episode(env_id)
    words = family.action_words
    assert len(words) == family.encoding.n_actions == len(set(words))
    assert all(w and w == w.strip() for w in words)
    texts = [family.obs_text(o) for o in ep.obs]
    assert texts == [type(family).obs_text(o.copy()) for o in ep.obs]  # deterministic
    assert all(0 < len(t) < 400 and "\n" not in t for t in texts)
    # Families that share an encoding read it alike, through the encoding's family.
    reader = encoding_family(family.encoding.name)
    assert [reader.obs_text(o) for o in ep.obs] == texts
    assert reader.action_words == words
    # Distinct text wherever the rendering tells the observations apart.
    minigrid = family.encoding.name == "minigrid"
    by_text: dict[str, set] = {}
    for o, t in zip(ep.obs, texts, strict=True):
        by_text.setdefault(t, set()).add(minigrid_projection(o) if minigrid else tuple(o.tolist()))
    assert all(len(p) == 1 for p in by_text.values())


def test_dark_texts_are_coordinates_and_tell_every_observation_apart():
    cells = [(x, y) for x in range(9) for y in range(9)]
    room = {DarkRoomEnv.obs_text(np.array(c, np.uint8)) for c in cells}
    assert len(room) == 81 and DarkRoomEnv.obs_text(np.array([2, 7])) == "at (2, 7)"
    door = {DarkKeyToDoorEnv.obs_text(np.array([*c, k], np.uint8)) for c in cells for k in (0, 1)}
    assert len(door) == 162
    assert DarkKeyToDoorEnv.obs_text(np.array([0, 8, 0])) == "at (0, 8), no key"


def test_a_minigrid_view_reads_as_written_by_hand():
    view = np.zeros(148, np.uint8)
    cells = view[:-1].reshape(7, 7, 3)
    cells[:, :, 0] = EMPTY
    cells[:, 0, 0] = WALL  # the far row: a wall 6 ahead (not on a line except straight ahead)
    cells[0, 6, 0] = WALL  # 3 to the left
    cells[3, 6] = OBJECT_TO_IDX["key"], COLOR_TO_IDX["yellow"], 0  # carried
    cells[5, 4] = OBJECT_TO_IDX["door"], COLOR_TO_IDX["blue"], STATE_TO_IDX["locked"]
    cells[3, 5] = OBJECT_TO_IDX["ball"], COLOR_TO_IDX["red"], 0
    cells[1, 1] = OBJECT_TO_IDX["goal"], COLOR_TO_IDX["green"], 0
    cells[6, 0] = UNSEEN, 0, 0
    view[-1] = 3
    assert minigrid_obs_text(view) == (
        "facing north; carrying a yellow key; wall 6 ahead, 3 left; a red ball 1 ahead; "
        "a locked blue door 2 ahead 2 right; goal 5 ahead 2 left"
    )


def test_minigrid_text_tells_apart_exactly_what_it_renders():
    views = random_views(3000, seed=0)
    texts = [minigrid_obs_text(v) for v in views]
    projections = [minigrid_projection(v) for v in views]
    by_text: dict[str, set] = {}
    for t, p in zip(texts, projections, strict=True):
        by_text.setdefault(t, set()).add(p)
    assert all(len(p) == 1 for p in by_text.values())
    assert len(set(projections)) == len(by_text) > 2000
    # A wall off the three lines is not rendered: two views that differ only there read alike.
    a = views[0].copy()
    a[:-1].reshape(7, 7, 3)[0, 0] = EMPTY, 0, 0
    b = a.copy()
    b[:-1].reshape(7, 7, 3)[0, 0] = WALL, 0, 0
    assert minigrid_obs_text(a) == minigrid_obs_text(b)


def test_an_unknown_encoding_has_no_family():
    with pytest.raises(KeyError, match="no registered trajbench family uses"):
        encoding_family("pixels")

"""``trajbench render``: watch a policy play a level after K demonstrations of it, as a GIF.

The K demonstrations are the family expert's episodes of the level, drawn as ``trajbench
collect`` draws them (episode ``i`` seeded by ``(seed, level, i)``); the policy then plays one
episode from a start no demonstration had, through :func:`trajbench.rollout.rollout`, exactly
as evaluation does. Frames are the family's ``rgb_array`` renders (for the dark families with
what the level hides, unless ``--no-hidden``).

:func:`write_episode_gifs` is what ``trajbench run`` calls after its report: one expert and one
trained episode per evaluated family, in ``OUT/episodes/``, shown in ``OUT/report.md``.

Example:
    trajbench render --model runs/dr-bursty/model --env trajbench/DarkRoom-v0 --level 3 --out dr3.gif
    trajbench render --policy expert --env trajbench/GoToLocal-v1 --level 17 --k 0 --out goto.gif
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gymnasium.wrappers import RenderCollection
from PIL import Image

from trajbench.cliargs import parse_config
from trajbench.collect import episode_seeds
from trajbench.collect import rollout as demonstrate
from trajbench.envs.dark_render import DarkRender
from trajbench.envs.demonstrators import Demonstrator
from trajbench.envs.registration import family_class
from trajbench.errors import TrajbenchError
from trajbench.families import make_env, resolve_env_id, sample_levels
from trajbench.io import atomic_write_bytes, atomic_write_text
from trajbench.policy import EpisodeRecord, Policy
from trajbench.privileged import PrivilegedPolicy
from trajbench.records import EXPERT
from trajbench.rollout import first_observations, rollout

from .jobs import Job
from .policies import load_policy


@dataclass(kw_only=True)
class RenderConfig:
    """Play one episode of a level after K expert demonstrations of it and write a GIF."""

    env: str
    """Environment id, e.g. trajbench/DarkRoom-v0 (see `trajbench envs`)."""
    level: int
    """The level to play (a test level: one no trained model has seen)."""
    out: Path
    """Output animation, a .gif file."""
    model: str = ""
    """A model directory written by trajbench train."""
    policy: str = ""
    """Instead of --model: a reference policy (random, expert, hashmap, replay, decoder,
    query-only)."""
    k: int = 4
    """Expert demonstrations of the level in the policy's context before it plays."""
    show_demos: bool = False
    """Also animate the K demonstrations, before the policy's episode."""
    hidden: bool = True
    """Draw what the dark families hide from the agent (goal, key, door, waypoints)."""
    seed: int = 0
    """Seed of the demonstrations, the episode's start and the policy's own randomness."""
    fps: int = 0
    """Frames per second (0: the family's render_fps)."""
    device: str = "cpu"
    """Torch device of a trained model."""


def make_recording_env(env_id: str, hidden: bool = True) -> RenderCollection:
    """``env_id`` on every level, rendering ``rgb_array`` frames that collect at each reset and
    step (``render()`` hands them over and starts afresh)."""
    dark = issubclass(family_class(env_id), DarkRender)
    kwargs = {"render_hidden": True} if hidden and dark else {}
    return RenderCollection(make_env(env_id, levels="all", render_mode="rgb_array", **kwargs))


def play(
    policy: Policy | PrivilegedPolicy,
    env: RenderCollection,
    level: int,
    k: int,
    seed: int,
    show_demos: bool = False,
) -> tuple[list[np.ndarray], dict]:
    """The frames of one episode of ``policy`` on ``level`` after ``k`` expert demonstrations.

    Args:
        policy: Any policy (a trained model, or a reference policy).
        env: From :func:`make_recording_env`.
        show_demos: Put the demonstrations' frames first.

    Returns:
        The frames, and the episode's record (``success``, ``return``, ``length``, ...).
    """
    u = env.unwrapped
    if not 0 <= level < u.n_levels:
        raise TrajbenchError(f"level {level} is out of range for {u.family}: 0..{u.n_levels - 1}")
    if k < 0:
        raise TrajbenchError(f"k must be >= 0, got {k}")
    env.reset(options={"level": level})
    mission = u.mission_text
    frames: list[np.ndarray] = []
    demos = []
    for i in range(k):
        env_seed, rng = episode_seeds(seed, level, i)
        r = demonstrate(env, Demonstrator("expert", env, rng), level, env_seed)
        demos.append(
            EpisodeRecord(r.obs, r.actions, r.rewards.astype(np.float32), level, i, r.mission)
        )
        if show_demos:
            frames += env.render()  # else the next reset drops them
    (record,) = rollout(
        policy,
        env.spec.id,
        [level],
        [demos],
        {level: mission},
        n_episodes=1,
        seed=seed,
        envs=[env],
        avoid_starts=[first_observations(demos)],
    )
    return frames + env.render(), record


def write_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float) -> Path:
    """Write ``frames`` (``[H, W, 3]`` uint8) as a looping GIF; the last frame stays a second.

    Example:
        >>> import tempfile
        >>> frames = [np.full((8, 8, 3), v, np.uint8) for v in (0, 255)]
        >>> p = write_gif(frames, tempfile.mkdtemp() + "/x.gif", fps=4)
        >>> Image.open(p).n_frames
        2
    """
    if not frames:
        raise TrajbenchError("no frames to write")
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    durations = [round(1000 / fps)] * (len(images) - 1) + [1000]
    buf = io.BytesIO()
    images[0].save(
        buf, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0
    )
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def render(cfg: RenderConfig) -> tuple[Path, dict]:
    """Play ``cfg``'s episode and write its GIF; returns the path and the episode's record."""
    if bool(cfg.model) == bool(cfg.policy):
        raise TrajbenchError("give one of --model DIR or --policy NAME")
    if Path(cfg.out).suffix.lower() != ".gif":
        raise TrajbenchError(f"--out must be a .gif file, got {cfg.out}")
    if cfg.fps < 0:
        raise TrajbenchError(f"fps must be >= 0, got {cfg.fps}")
    env_id = resolve_env_id(cfg.env)
    env = make_recording_env(env_id, cfg.hidden)
    try:
        u = env.unwrapped
        policy, _ = load_policy(cfg.model or cfg.policy, u.encoding, cfg.seed, device=cfg.device)
        frames, record = play(policy, env, cfg.level, cfg.k, cfg.seed, cfg.show_demos)
        fps = cfg.fps or u.metadata.get("render_fps", 4)
    finally:
        env.close()
    return write_gif(frames, cfg.out, fps), record


def write_episode_gifs(out: Path, jobs: Sequence[Job], device: str = "cpu") -> list[Path]:
    """One expert and one trained episode per evaluated family of a run, shown in its report.

    For each family the run evaluates, the first trained job of the first group that evaluates it
    plays the first level of that group's evaluation store after as many demonstrations as the
    group's largest K; the expert plays the same level. GIFs go to ``OUT/episodes/`` and a table
    of them to the end of ``OUT/report.md``. A family whose frames fail is skipped with a warning
    line, so a rendering problem never costs a run its report.
    """
    picks: dict[str, tuple[Job, object]] = {}
    for job in jobs:
        if job.condition is not None:
            for spec in (*job.group.test_data, *job.group.heldout_family_data):
                picks.setdefault(spec.env, (job, spec))
    rows, written = [], []
    for env_id, (job, spec) in picks.items():
        try:
            row, paths = _family_gifs(out, env_id, job, spec, device)
        except Exception as err:  # whatever fails here costs the GIFs only, never the report
            print(f"warning: no episode GIFs for {env_id}: {err}", file=sys.stderr)
            continue
        rows.append(row)
        written += paths
    if rows:
        _add_to_report(out / "report.md", rows)
    return written


def _family_gifs(out: Path, env_id: str, job: Job, spec, device: str) -> tuple[str, list[Path]]:
    """Play the expert and ``job``'s model on the first level of ``spec``; write both GIFs."""
    env = make_recording_env(env_id)
    try:
        level = int(sample_levels(env, spec.levels, spec.max_levels)[0])
        fps = env.unwrapped.metadata.get("render_fps", 4)
        k, encoding = max(job.group.eval.ks), env.unwrapped.encoding
        players = {
            EXPERT: load_policy(EXPERT, encoding, 0)[0],
            job.name: load_policy(str(job.directory(out) / "model"), encoding, 0, device)[0],
        }
        episodes = {who: play(p, env, level, k, job.eval_seed) for who, p in players.items()}
    finally:
        env.close()
    name, cells, paths = env_id.split("/")[-1], [], []
    for who, (frames, record) in episodes.items():
        paths.append(write_gif(frames, out / "episodes" / f"{name}-{who}.gif", fps))
        outcome = "success" if record["success"] else "failure"
        cells.append(f"![{who}](episodes/{paths[-1].name}) {outcome}")
    row = f"| {env_id}, level {level} | {cells[0]} | {job.name}, seed {job.seed}: {cells[1]} |"
    return row, paths


def _add_to_report(report: Path, rows: list[str]) -> None:
    """Replace (or add) the report's episode section, a table of ``rows``."""
    section = "\n".join(
        [
            "## Episodes",
            "",
            "One episode of a held-out level per family, after the group's largest K expert "
            "demonstrations of the level: the expert, then a trained policy "
            "(GIFs in `episodes/`; the dark families show what they hide from the agent).",
            "",
            "| family, level | expert | trained |",
            "|---|---|---|",
            *rows,
            "",
        ]
    )
    text = report.read_text(encoding="utf-8") if report.exists() else ""
    text = text.split("\n## Episodes\n", 1)[0].rstrip("\n")
    atomic_write_text(report, f"{text}\n\n{section}" if text else section)


def main(argv: list[str]) -> int:
    """``trajbench render``: parse flags into :class:`RenderConfig`, play and write the GIF."""
    cfg = parse_config(RenderConfig, list(argv), "trajbench render")
    if cfg is None:  # --help
        return 0
    path, record = render(cfg)
    outcome = "success" if record["success"] else "failure"
    print(f"{outcome} in {record['length']} steps (return {record['return']:g}) -> {path}")
    return 0

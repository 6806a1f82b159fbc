"""Benchmark presets: which data, training conditions, seeds and evaluations a run holds.

A preset is a list of *groups*. A group trains on one or more families that share an observation
encoding and is evaluated on their held-out levels (``test_levels``) and on held-out families
(``test_families``). Each group crosses its context modes and instruction modes with the seeds.
Every condition of a group gets the same data, model size and number of steps, so conditions
differ only in what their training contexts look like.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trajbench.baselines.transformer import ModelConfig
from trajbench.contexts import MODE_NAMES, ContextConfig

from .evaluate import EvalConfig
from .train import TrainConfig


@dataclass(frozen=True)
class DataSpec:
    """An episode store to collect: ``trajbench collect`` arguments."""

    env: str
    levels: str
    episodes_per_level: int
    demonstrator: str = "expert"
    seed: int = 0
    max_levels: int = 0
    """Use a seeded random draw of N levels of the split (0: all); keeps CPU presets small."""

    @property
    def name(self) -> str:
        family = self.env.split("/")[-1]
        cap = f"-sample{self.max_levels}" if self.max_levels else ""
        return f"{family}-{self.levels}{cap}-{self.demonstrator}-n{self.episodes_per_level}-s{self.seed}"


def train_template(
    steps: int = 200,
    batch_size: int = 32,
    warmup_steps: int = 30,
    k: int = 4,
    context_demonstrators: tuple[str, ...] = ("expert",),
    **model,
) -> TrainConfig:
    """A group's training config: every job fills in its data, directory, seed and condition."""
    return TrainConfig(
        context=ContextConfig(k=k, context_demonstrators=context_demonstrators),
        model=ModelConfig(**model),
        steps=steps,
        batch_size=batch_size,
        warmup_steps=warmup_steps,
    )


def eval_template(
    ks: tuple[int, ...] = (0, 1, 2, 4), episodes: int = 2, max_levels: int = 0
) -> EvalConfig:
    """A group's evaluation config: every job fills in its policy, data, directory and seed."""
    return EvalConfig(ks=ks, episodes=episodes, max_levels=max_levels)


@dataclass
class Group:
    """Families trained together and the conditions crossed over them."""

    name: str
    train_data: tuple[DataSpec, ...]
    test_data: tuple[DataSpec, ...]
    """Expert episodes of held-out levels of the training families (demonstrations)."""
    heldout_family_data: tuple[DataSpec, ...] = ()
    """Expert episodes of families never trained on."""
    modes: tuple[str, ...] = MODE_NAMES
    instructions: tuple[str, ...] = ("full",)
    p_bursty: tuple[float | None, ...] = (None,)
    train: TrainConfig = field(default_factory=train_template)
    """Training config of every condition; a job replaces its mode, instruction and p_bursty."""
    eval: EvalConfig = field(default_factory=eval_template)
    """Evaluation config of every job."""
    baselines: tuple[str, ...] = ("random", "hashmap", "replay", "expert")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    groups: tuple[Group, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    device: str = "auto"
    compile: bool = False
    workers: int = 2
    """Training/evaluation jobs run in parallel (one CPU thread each on CPU)."""


DR = "trajbench/DarkRoom-v0"
DKTD = "trajbench/DarkKeyToDoor-v0"
GOTO = "trajbench/GoToLocal-v0"
PICKUP = "trajbench/PickupLoc-v0"
PUTNEXT = "trajbench/PutNextLocal-v0"
FOUR_ROOMS = "trajbench/FourRooms-v0"
MULTI_ROOM = "trajbench/MultiRoom-v0"
SIMPLE_CROSSING = "trajbench/SimpleCrossing-v0"
LAVA_CROSSING = "trajbench/LavaCrossing-v0"
DOOR_KEY = "trajbench/DoorKey-v0"
UNLOCK = "trajbench/Unlock-v0"


_LARGE_MINIGRID = train_template(
    steps=10000,
    batch_size=64,
    context_demonstrators=("expert", "noisy"),
    d_model=256,
    n_layers=6,
    n_heads=8,
)


def _dark_room(
    n_train: int, n_test: int, train: TrainConfig, eval: EvalConfig | None = None, **kw
) -> Group:
    return Group(
        name="dark-room",
        train_data=(DataSpec(DR, "train", n_train),),
        test_data=(DataSpec(DR, "test", n_test, seed=1),),
        train=train,
        eval=eval or eval_template(),
        **kw,
    )


PRESETS: dict[str, Preset] = {
    "ci": Preset(
        name="ci",
        description="Seconds-scale check of the whole pipeline (used by the tests).",
        groups=(
            _dark_room(
                n_train=6,
                n_test=3,
                train=train_template(steps=40, d_model=32),
                eval=eval_template(ks=(0, 2), episodes=1, max_levels=6),
                modes=("bursty", "none"),
                baselines=("random", "hashmap", "replay"),
            ),
        ),
        seeds=(0, 1),
    ),
    "smoke": Preset(
        name="smoke",
        description=(
            "The README's main job on a 2-core CPU: the five context modes on Dark Room, and the "
            "four instruction modes crossed with bursty and isolated on BabyAI GoToLocal, 3 seeds."
        ),
        groups=(
            _dark_room(n_train=20, n_test=8, train=train_template(steps=200)),
            Group(
                name="babyai-goto",
                train_data=tuple(
                    DataSpec(env, "train", 2, demonstrator, max_levels=300)
                    for env in (GOTO, PUTNEXT)
                    for demonstrator in ("expert", "noisy")
                ),
                test_data=(DataSpec(GOTO, "test", 3, seed=1, max_levels=24),),
                heldout_family_data=(DataSpec(PICKUP, "test", 3, seed=1, max_levels=24),),
                modes=("bursty", "isolated"),
                instructions=("full", "empty", "template", "wrong"),
                train=train_template(steps=400, context_demonstrators=("expert", "noisy")),
                eval=eval_template(ks=(0, 4), episodes=1),
            ),
        ),
    ),
    "standard": Preset(
        name="standard",
        description="The whole suite on a GPU: larger models, every mode and instruction, held-out families.",
        groups=(
            _dark_room(
                n_train=40,
                n_test=10,
                train=train_template(steps=3000, batch_size=64, d_model=128, n_layers=4),
            ),
            Group(
                name="dark-key-to-door",
                train_data=(DataSpec(DKTD, "train", 4, max_levels=2000),),
                test_data=(DataSpec(DKTD, "test", 6, seed=1, max_levels=100),),
                train=train_template(steps=6000, batch_size=64, d_model=128, n_layers=4),
            ),
            Group(
                name="minigrid-navigation",
                train_data=tuple(
                    DataSpec(e, "train", 2, d, max_levels=3000)
                    for e in (FOUR_ROOMS, MULTI_ROOM, SIMPLE_CROSSING, DOOR_KEY, UNLOCK)
                    for d in ("expert", "noisy")
                ),
                test_data=tuple(
                    DataSpec(e, "test", 4, seed=1, max_levels=100)
                    for e in (FOUR_ROOMS, MULTI_ROOM, SIMPLE_CROSSING, DOOR_KEY, UNLOCK)
                ),
                heldout_family_data=(DataSpec(LAVA_CROSSING, "test", 4, seed=1, max_levels=100),),
                train=_LARGE_MINIGRID,
            ),
            Group(
                name="babyai",
                train_data=tuple(
                    DataSpec(e, "train", 2, d, max_levels=3000)
                    for e in (GOTO, PUTNEXT)
                    for d in ("expert", "noisy")
                ),
                test_data=tuple(
                    DataSpec(e, "test", 4, seed=1, max_levels=100) for e in (GOTO, PUTNEXT)
                ),
                heldout_family_data=(DataSpec(PICKUP, "test", 4, seed=1, max_levels=100),),
                instructions=("full", "empty", "template", "wrong"),
                train=_LARGE_MINIGRID,
            ),
        ),
        seeds=(0, 1, 2, 3, 4),
        workers=1,
    ),
    "gpu": Preset(
        name="gpu",
        description="Sized for about 8 minutes on one H100: Dark Room, five modes, 3 seeds, a larger model.",
        groups=(
            _dark_room(
                n_train=40,
                n_test=10,
                train=train_template(steps=1500, batch_size=128, d_model=128, n_layers=4),
            ),
        ),
        workers=1,
    ),
}

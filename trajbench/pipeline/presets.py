"""Benchmark presets: which data, training conditions, seeds and evaluations a run holds.

A preset is a list of *groups*. A group trains on one or more families that share an observation
encoding and is evaluated on their held-out levels (``test_levels``) and on held-out families
(``test_families``). Each group crosses its context modes and instruction modes with the seeds.
Every condition of a group gets the same data, model size and number of steps, so conditions
differ only in what their training contexts look like -- or, in the ``architectures`` preset, in
their backbone (sized to about the same number of parameters).

Each group **declares its questions** (:class:`~trajbench.report.questions.Question`: which
conditions, at which K, on which families) before anything runs; the report answers exactly
those, at every K of the sweep a question does not restrict, and picks no condition after the
results. Every preset but ``ci`` (a seconds-scale check of the pipeline, not a result) trains at
least :data:`MIN_SEEDS` seeds per condition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

from trajbench.baselines.model_config import ModelConfig
from trajbench.contexts import MODE_NAMES, ContextConfig
from trajbench.contexts.modes import BURSTY, ISOLATED, NONE, SHUFFLED, TRAJECTORIES
from trajbench.llm import POLICY_SPEC as LLM_POLICY
from trajbench.records import DECODER, EXPERT, HASHMAP, MATCHED, RANDOM, REPLAY
from trajbench.report.questions import Question, about_itself, ask, copying, two_by_two

from .eval_config import EvalConfig
from .train_config import TrainConfig


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
    ks: tuple[int, ...] = (0, 1, 2, 4),
    episodes: int = 4,
    max_levels: int = 0,
    support: str = "both",
) -> EvalConfig:
    """A group's evaluation config: every job fills in its policy, data, directory and seed."""
    return EvalConfig(ks=ks, episodes=episodes, max_levels=max_levels, support=support)


@dataclass(frozen=True)
class Condition:
    """One training condition of a group: a context mode, an instruction mode, a p_bursty, and
    the backbone ("": the group's)."""

    train_context: str
    """The context mode its models train with: its records' ``train_context``."""
    instruction: str = "full"
    p_bursty: float | None = None
    backbone: str = ""


def cross(
    modes: tuple[str, ...] = MODE_NAMES,
    instructions: tuple[str, ...] = ("full",),
    p_bursty: tuple[float | None, ...] = (None,),
    backbones: tuple[str, ...] = ("",),
) -> tuple[Condition, ...]:
    """Every combination of ``modes``, ``instructions``, ``p_bursty`` and ``backbones``."""
    return tuple(Condition(*c) for c in product(modes, instructions, p_bursty, backbones))


@dataclass
class Group:
    """Families trained together and the conditions trained on them."""

    name: str
    train_data: tuple[DataSpec, ...]
    test_data: tuple[DataSpec, ...]
    """Expert episodes of held-out levels of the training families (demonstrations)."""
    heldout_family_data: tuple[DataSpec, ...] = ()
    """Expert episodes of families never trained on."""
    conditions: tuple[Condition, ...] = field(default_factory=cross)
    """Training conditions; every one is trained with every seed."""
    train: TrainConfig = field(default_factory=train_template)
    """Training config of every condition; a job replaces its mode, instruction and p_bursty."""
    eval: EvalConfig = field(default_factory=eval_template)
    """Evaluation config of every job."""
    decoy_eval: bool = False
    """Also evaluate every full-instruction model and reference policy with decoy missions on
    the query (the instruction ablation's conflict test; BabyAI families)."""
    baselines: tuple[str, ...] = (RANDOM, HASHMAP, REPLAY, DECODER, EXPERT)
    questions: tuple[Question, ...] = ()
    """The comparisons the report answers, declared before the run (labels of this group's
    conditions and reference policies)."""

    def __post_init__(self):
        labels = {*self.baselines, *(_label(c, self.conditions) for c in self.conditions)}
        for q in self.questions:
            unknown = sorted({*q.a, *q.b} - labels)
            if unknown:
                raise ValueError(
                    f"group {self.name!r}: question {q.name!r} names {unknown}, which the group "
                    f"neither trains nor evaluates (it has {sorted(labels)})"
                )


def _label(c: Condition, conditions: tuple[Condition, ...]) -> str:
    """The report's label of ``c`` among ``conditions`` (:func:`trajbench.report.tables.labelled`)."""
    label = c.train_context + ("" if c.instruction == "full" else f"/{c.instruction}")
    label += "" if c.p_bursty is None else f" p={c.p_bursty:g}"
    several = len({x.backbone for x in conditions}) > 1
    return label + (f" [{c.backbone or '-'}]" if several else "")


#: Training seeds every condition of every preset but ``ci`` gets (issue 25: fewer cannot carry
#: the intervals).
MIN_SEEDS = 5


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    groups: tuple[Group, ...]
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    device: str = "auto"
    compile: bool = False
    workers: int = 2
    """Training/evaluation jobs run in parallel (one CPU thread each on CPU)."""
    jobs_per_gpu: int = 1
    """Training/evaluation jobs run at once on one GPU (1 until measured on a card: issue 16)."""

    @property
    def data(self) -> list[DataSpec]:
        """Every episode store the preset collects, once each, by name."""
        specs = {
            s for g in self.groups for s in (*g.train_data, *g.test_data, *g.heldout_family_data)
        }
        return sorted(specs, key=lambda s: s.name)


DR = "trajbench/DarkRoom-v0"
DKTD = "trajbench/DarkKeyToDoor-v0"
DSEQ = "trajbench/DarkSequence-v0"
GOTO = "trajbench/GoToLocal-v2"
PICKUP = "trajbench/PickupLoc-v2"
PUTNEXT = "trajbench/PutNextLocal-v2"
FOUR_ROOMS = "trajbench/FourRooms-v2"
MULTI_ROOM = "trajbench/MultiRoom-v2"
SIMPLE_CROSSING = "trajbench/SimpleCrossing-v2"
LAVA_CROSSING = "trajbench/LavaCrossing-v2"
DOOR_KEY = "trajbench/DoorKey-v2"
UNLOCK = "trajbench/Unlock-v2"
HIDDEN = {f: f"trajbench/Hidden{f}-v0" for f in ("FourRooms", "MultiRoom", "GoToLocal")}

#: The instruction ablation's 2x2: context (bursty / none) x mission (full / empty).
INSTRUCTION_2X2 = cross((BURSTY, NONE), ("full", "empty"))
#: The 2x2 and its further rows: content words masked (template), another object named (wrong).
INSTRUCTION_ABLATION = (*INSTRUCTION_2X2, *cross((BURSTY,), ("template", "wrong")))

#: The questions of a group that trains every context mode: support, order and context, each at
#: every K, and the copy baselines as the floor of the bursty model.
MODE_QUESTIONS = (
    ask("support", BURSTY, TRAJECTORIES),
    ask("support and order", BURSTY, ISOLATED),
    ask("order", BURSTY, SHUFFLED),
    ask("order (matched format)", BURSTY, SHUFFLED, b_format=MATCHED),
    ask("order", TRAJECTORIES, ISOLATED),
    ask("context", BURSTY, NONE),
    *copying(BURSTY),
)


def _group(
    name: str,
    env: str,
    n_train_levels: int,
    n_test_levels: int,
    train: TrainConfig,
    eval: EvalConfig,
    **kw,
) -> Group:
    """A group on one family: expert episodes of sampled train and test levels."""
    return Group(
        name=name,
        train_data=(DataSpec(env, "train", 6, max_levels=n_train_levels),),
        test_data=(DataSpec(env, "test", 6, seed=1, max_levels=n_test_levels),),
        train=train,
        eval=eval,
        **kw,
    )


def _dark_room(
    train: TrainConfig, ks: tuple[int, ...] = (0, 1, 4), support: str = "both", **kw
) -> Group:
    """Dark Room on every level (65 train, 16 held out), E = 8: its 16 held-out levels need more
    episodes per level for the same precision."""
    return _group(
        "dark-room",
        DR,
        0,
        0,
        train=train,
        eval=eval_template(ks=ks, episodes=8, support=support),
        **kw,
    )


def _babyai(
    n_train: int,
    n_test: int,
    train: TrainConfig,
    eval: EvalConfig,
    families: tuple[str, ...] = (GOTO, PUTNEXT),
    heldout: tuple[str, ...] = (PICKUP,),
    demonstrators: tuple[str, ...] = ("expert",),
    conditions: tuple[Condition, ...] = INSTRUCTION_ABLATION,
    ablation_families: tuple[str, ...] = (GOTO,),
) -> Group:
    """BabyAI with the instruction ablation, its 2x2 asked on ``ablation_families`` (where the
    mission names the target and the demonstrations show it), the copy baselines on every
    family. By default GoToLocal and
    PutNextLocal are trained and PickupLoc held out: its expert's actions (pickup, drop) are
    PutNextLocal's targets."""
    return Group(
        name="babyai",
        train_data=tuple(
            DataSpec(e, "train", 6, d, max_levels=n_train) for e in families for d in demonstrators
        ),
        test_data=tuple(DataSpec(e, "test", 6, seed=1, max_levels=n_test) for e in families),
        heldout_family_data=tuple(
            DataSpec(e, "test", 6, seed=1, max_levels=n_test) for e in heldout
        ),
        conditions=conditions,
        decoy_eval=True,
        train=train,
        eval=eval,
        questions=(
            *two_by_two(families=ablation_families),
            *copying(BURSTY),
        ),
    )


#: The architecture comparison: a transformer, a state-space model and an LSTM of about the same
#: size (72.8k, 71.9k and 69.4k parameters on Dark Room: d_model 64, 2 layers; d_ff 96 sizes
#: Llama's feed-forward layers to Mamba-2's and the LSTM's width; checked in the tests).
ARCHITECTURES = ("llama", "mamba2", "lstm")
_ARCHITECTURE_MODEL = dict(d_model=64, n_layers=2, n_heads=4, d_ff=96)


def _architectures(name: str, env: str, n_train: int, n_test: int, steps: int, k: int) -> Group:
    """Bursty training of every backbone of :data:`ARCHITECTURES` on one family; evaluated with
    demonstrations of the level itself and of other levels (the no-support score)."""
    return _group(
        name,
        env,
        n_train,
        n_test,
        train=train_template(steps=steps, k=k, **_ARCHITECTURE_MODEL),
        eval=eval_template(ks=(0, 1, k)),
        conditions=cross((BURSTY,), backbones=ARCHITECTURES),
        baselines=(RANDOM, HASHMAP, REPLAY, DECODER),
        questions=architecture_questions(ARCHITECTURES, in_context_ks=(1, k)),
    )


def architecture_questions(
    backbones: tuple[str, ...],
    copies: tuple[str, ...] = (HASHMAP, REPLAY),
    in_context_ks: tuple[int, ...] = (),
) -> tuple[Question, ...]:
    """Each bursty model's *in context* gain (demonstrations of the level vs of other levels, at
    ``in_context_ks``: K = 0 shows none), each pair of models (*architecture*), and each model
    against the copy baselines ``copies``."""
    labels = [f"bursty [{b}]" for b in backbones]
    return (
        *(
            ask(
                "in context",
                x,
                x,
                support=("same", "other"),
                ks=in_context_ks,
                text=f"{x}: same level - other levels",
            )
            for x in labels
        ),
        *(ask("architecture", x, y) for i, x in enumerate(labels) for y in labels[i + 1 :]),
        *(q for x in labels for q in copying(x, copies)),
    )


_LARGE_MINIGRID = train_template(
    steps=10000,
    batch_size=64,
    context_demonstrators=("expert", "noisy"),
    d_model=256,
    n_layers=6,
    n_heads=8,
)


def _gpu_model(**kw) -> TrainConfig:
    """The gpu preset's larger model, trained on larger batches."""
    return train_template(batch_size=128, d_model=128, n_layers=4, **kw)


_LLM = {"conditions": (), "baselines": (RANDOM, HASHMAP, REPLAY, DECODER, LLM_POLICY)}
_LLM["questions"] = about_itself(LLM_POLICY)  # scored whole and shuffled (its context_mode)
_LLM_EVAL = eval_template(ks=(0, 1, 4), max_levels=6)  # E = 4: 20 min on 2 cores (bfloat16)
PRESETS: dict[str, Preset] = {
    "ci": Preset(
        name="ci",
        description=(
            "Seconds-scale check of the whole pipeline (used by the tests); 2 seeds, so its "
            "numbers are not results."
        ),
        groups=(
            _group(
                "dark-room",
                DR,
                0,
                6,
                train=train_template(steps=40, d_model=32),
                eval=eval_template(ks=(0, 2), episodes=2),
                conditions=cross((BURSTY, NONE)),
                baselines=(RANDOM, HASHMAP, REPLAY, DECODER),
                questions=(ask("context", BURSTY, NONE), *copying(BURSTY)),
            ),
        ),
        seeds=(0, 1),
    ),
    "smoke": Preset(
        name="smoke",
        description=(
            "The README's main job on a 2-core CPU, 5 seeds, a few declared questions (with "
            "demonstrations of the level only): support and order on Dark Room (bursty vs "
            "isolated), order on the order family at K = 2 and 4 (bursty vs shuffled), and "
            "BabyAI's instruction 2x2 (context x mission), each against the copy baselines."
        ),
        groups=(
            _dark_room(
                train_template(steps=300),
                ks=(1, 4),
                support="same",
                conditions=cross((BURSTY, ISOLATED)),
                questions=(ask("support and order", BURSTY, ISOLATED), *copying(BURSTY)),
            ),
            _group(
                "dark-sequence",
                DSEQ,
                1000,
                100,
                # Trained on four demonstrations and asked at K = 2 and 4: the order gap
                # shrinks with K on this family (shuffled steps chain back into paths), and the
                # report shows every K it evaluated.
                train=train_template(steps=500, k=4),
                eval=eval_template(ks=(2, 4), support="same"),
                conditions=cross((BURSTY, SHUFFLED)),
                questions=(
                    ask("order", BURSTY, SHUFFLED),
                    ask("order (matched format)", BURSTY, SHUFFLED, b_format=MATCHED),
                    *copying(BURSTY),
                ),
            ),
            # GoToLocal alone: the held-out family needs PutNextLocal's actions, which the
            # standard preset trains (BabyAI's bot makes these collections the slowest part).
            _babyai(
                300,
                100,
                train_template(steps=500),
                eval_template(ks=(4,), support="same"),
                (GOTO,),
                (),
                conditions=INSTRUCTION_2X2,
            ),
        ),
    ),
    "architectures": Preset(
        name="architectures",
        description=(
            "Does recurrence learn in context (Chan et al. 2022, asked of trajectories)? Llama, "
            "Mamba-2 and LSTM policies of about equal size, bursty training on Dark Room and the "
            "order family, 5 seeds, on a 2-core CPU."
        ),
        groups=(
            _architectures("dark-room", DR, 0, 0, steps=300, k=4),
            _architectures("dark-sequence", DSEQ, 1000, 100, steps=600, k=2),
        ),
    ),
    "standard": Preset(
        name="standard",
        description=(
            "The whole suite on a GPU: larger models, every mode at every K on every headline "
            "family, the instruction 2x2 with template and wrong rows on 200 held-out levels, "
            "held-out families."
        ),
        groups=(
            *(
                _group(
                    name,
                    env,
                    n_train,
                    n_test,
                    train=train_template(steps=steps, batch_size=64, d_model=128, n_layers=4),
                    eval=eval_template(),
                    questions=MODE_QUESTIONS,
                )
                for name, env, n_train, n_test, steps in (
                    ("dark-room", DR, 0, 0, 3000),
                    ("dark-key-to-door", DKTD, 2000, 200, 6000),
                    ("dark-sequence", DSEQ, 20000, 400, 8000),
                    ("dark-fetch", "trajbench/DarkFetch-v0", 20000, 400, 8000),
                    *((f"hidden-{f.lower()}", env, 3000, 200, 8000) for f, env in HIDDEN.items()),
                )
            ),
            Group(
                name="minigrid-navigation",
                train_data=tuple(
                    DataSpec(e, "train", 6, d, max_levels=3000)
                    for e in (FOUR_ROOMS, MULTI_ROOM, SIMPLE_CROSSING, DOOR_KEY, UNLOCK)
                    for d in ("expert", "noisy")
                ),
                test_data=tuple(
                    DataSpec(e, "test", 6, seed=1, max_levels=100)
                    for e in (FOUR_ROOMS, MULTI_ROOM, SIMPLE_CROSSING, DOOR_KEY, UNLOCK)
                ),
                heldout_family_data=(DataSpec(LAVA_CROSSING, "test", 6, seed=1, max_levels=100),),
                train=_LARGE_MINIGRID,
                questions=MODE_QUESTIONS,
            ),
            _babyai(3000, 200, _LARGE_MINIGRID, eval_template(), demonstrators=("expert", "noisy")),
        ),
        workers=1,
    ),
    "llm": Preset(
        name="llm",
        description="The text track: SmolLM2-135M-Instruct in context, untrained, at K = 0, 1, 4.",
        groups=(
            _group("dark-room", DR, 16, 0, train_template(), _LLM_EVAL, **_LLM),
            _group("dark-sequence", DSEQ, 16, 16, train_template(), _LLM_EVAL, **_LLM),
        ),
        workers=2,  # the LM evaluates on one thread per job
    ),
    "gpu": Preset(
        name="gpu",
        description=(
            "Sized for one H100 (about 8 minutes at 10 ms a training step, an estimate until "
            "benchmarks/gpu_check.sh measures it): Dark Room and the order family, five modes "
            "each, 5 seeds, a larger model; the order family at K = 1, 2 and 4."
        ),
        groups=(
            _dark_room(_gpu_model(steps=600), questions=MODE_QUESTIONS),
            _group(
                "dark-sequence",
                DSEQ,
                20000,
                200,
                train=_gpu_model(steps=1500, k=2),
                eval=eval_template(ks=(0, 1, 2, 4)),
                questions=MODE_QUESTIONS,
            ),
        ),
        workers=1,
    ),
}

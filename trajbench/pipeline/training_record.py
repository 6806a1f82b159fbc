"""The training record a trained model directory holds (``training.json``): how it was trained.

Example:
    record = read_training_record("runs/dr-bursty/model")
    record.config.context.mode, record.trained_levels
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trajbench.baselines.transformer import TrajectoryTransformer
from trajbench.configs import from_dict, to_dict
from trajbench.data import EpisodeStore
from trajbench.errors import TrajbenchError

from .train_config import TrainConfig

#: The training record inside a saved model directory (see :class:`TrainingRecord`).
TRAINING_FILE = "training.json"


@dataclass
class TrainingRecord:
    """What a trained model directory records about how it was trained (``training.json``).

    Evaluation reads it back to show the model its own instruction mode, to know whether it saw
    any context, and to refuse the levels it trained on.
    """

    config: TrainConfig
    """The training config."""
    data_hash: str
    """Content hash of the training store(s)."""
    trained_levels: dict[str, list[int]]
    """Family -> every level with an episode in the training store(s), sorted."""
    parameters: int
    """Number of model parameters."""
    trajbench_version: str
    """The trajbench version that trained it."""
    format_version: int = 1
    """Version of this record's layout."""


def trained_levels(store: EpisodeStore) -> dict[str, list[int]]:
    """Family -> the sorted levels of every episode in ``store``."""
    eps = store.episodes
    return {
        str(env): sorted(int(x) for x in levels.unique())
        for env, levels in eps.groupby("env_id", sort=True)["level"]
    }


def save_trained_model(
    model: TrajectoryTransformer, model_dir: Path, record: TrainingRecord
) -> None:
    """Write ``model`` and its :class:`TrainingRecord` into ``model_dir``, atomically, together."""
    text = json.dumps(to_dict(record), indent=2) + "\n"
    model.save_pretrained(model_dir, extra_files={TRAINING_FILE: text})


def read_training_record(model_dir: str | Path) -> TrainingRecord:
    """The :class:`TrainingRecord` of a model directory written by ``trajbench train``.

    Raises:
        TrajbenchError: no such file, or a file that does not hold a training record.
    """
    path = Path(model_dir) / TRAINING_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrajbenchError(
            f"{model_dir} has no {TRAINING_FILE}; was it written by trajbench train?"
        ) from None
    except (OSError, ValueError) as err:
        raise TrajbenchError(f"cannot read {path}: {err}") from None
    return from_dict(TrainingRecord, data, str(path))

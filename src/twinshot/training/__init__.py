"""Training: typed configs, the generic trainer, atomic checkpoints, presets.

>>> from twinshot.training import load_config, train
>>> config = load_config(preset="omniglot", overrides=["run.epochs=1"])  # doctest: +SKIP
>>> result = train(config, "runs/omniglot")                               # doctest: +SKIP
"""

from twinshot.training.config import (
    AugmentationConfig,
    DataConfig,
    EarlyStoppingConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    PreprocessingConfig,
    RunConfig,
    SamplerConfig,
    ScheduleConfig,
    TrainConfig,
    ValidationConfig,
    apply_overrides,
    load_config,
    parse_duration,
    save_config,
)
from twinshot.training.heldout import evaluate_heldout
from twinshot.training.presets import preset_names
from twinshot.training.run import TrainResult, model_spec, train

__all__ = [
    "TrainConfig", "DataConfig", "PreprocessingConfig", "ModelConfig", "LossConfig", "SamplerConfig",
    "AugmentationConfig", "OptimizerConfig", "ScheduleConfig", "RunConfig", "ValidationConfig",
    "EarlyStoppingConfig", "load_config", "apply_overrides", "save_config", "parse_duration",
    "preset_names", "train", "TrainResult", "model_spec", "evaluate_heldout",
]

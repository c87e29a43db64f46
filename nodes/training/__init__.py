"""LoRA fine-tuning nodes: training clips from videos, and the train node (issue 27)."""

from .dataset import DynamiCrafterTrainingClips
from .train import DynamiCrafterTrainLoRA

NODES = [DynamiCrafterTrainingClips, DynamiCrafterTrainLoRA]

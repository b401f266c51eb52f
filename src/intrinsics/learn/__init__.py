"""Learning layer: models, training, splits, adversarial robustness and d_repr.

Everything the method claims about trained networks is measured here: test loss as a function of
N (with :func:`make_split` and :func:`train`), robustness (:func:`evaluate_attack`), and the
dimension of the learned representation (:func:`repr_dimension`). :func:`run_train`,
:func:`run_attack` and :func:`run_repr` are the CLI commands as functions.
"""

from .attacks import AttackResult, evaluate_attack, fgsm, parse_eps, pgd
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .models import MODELS, ImageClassifier, Normalize, SmallCNN, create_model, list_models
from .representation import ReprEstimate, layer_activations, repr_dimension, resolve_layer
from .runs import run_attack, run_repr, run_train
from .splits import class_pair, make_split, random_class_pairs
from .train import TrainConfig, TrainResult, evaluate, train

__all__ = [
    "AttackResult",
    "evaluate_attack",
    "fgsm",
    "parse_eps",
    "pgd",
    "Checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "MODELS",
    "ImageClassifier",
    "Normalize",
    "SmallCNN",
    "create_model",
    "list_models",
    "ReprEstimate",
    "layer_activations",
    "repr_dimension",
    "resolve_layer",
    "run_attack",
    "run_repr",
    "run_train",
    "class_pair",
    "make_split",
    "random_class_pairs",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "train",
]

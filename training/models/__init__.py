"""Churn and stage models (LightGBM) and the baselines they are judged against (DESIGN s. 6).

Every estimator follows the scikit-learn contract. :func:`feature_columns` picks the model
inputs of a ``training.datasets.build_training_set`` frame.
"""

from training.models._lgbm import NON_FEATURES, feature_columns
from training.models.baselines import LogisticChurn, RFMChurnHeuristic, StayInStage
from training.models.churn import ChurnModel
from training.models.stage import StageModel

__all__ = [
    "NON_FEATURES",
    "ChurnModel",
    "LogisticChurn",
    "RFMChurnHeuristic",
    "StageModel",
    "StayInStage",
    "feature_columns",
]

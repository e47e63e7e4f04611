"""The MedMCQA privacy experiment: scenarios 1, 2, 4 and three text-DP sanitisers x ε.

``run_experiment(QuestionFile(path), "out/")`` runs it and returns the accuracy table;
``flowkit run medmcqa --output out/`` does the same from a shell. See ``flows.medmcqa.flow``
for the graph and its building blocks, ``flows.medmcqa.privacy`` for the mechanisms and
``flows.medmcqa.simulate`` for the offline rule.
"""

from flows.medmcqa.data import DataError, Question, QuestionFile, sample_path
from flows.medmcqa.flow import (
    DEFAULT_EPSILONS,
    CellNode,
    CoTAnswer,
    Experiment,
    ExperimentError,
    LocalAnswer,
    Paraphrase,
    PhraseDPCells,
    PrivateCells,
    QuestionsFlow,
    RemoteAnswer,
    build_flow,
)
from flows.medmcqa.run import DEFAULT_LIMITS, hashed_embedder, run_experiment, write_outputs
from flows.medmcqa.simulate import SimulatedModels
from flows.medmcqa.table import SCENARIOS, AccuracyTable, Cell

__all__ = [
    "DEFAULT_EPSILONS",
    "DEFAULT_LIMITS",
    "SCENARIOS",
    "AccuracyTable",
    "Cell",
    "CellNode",
    "CoTAnswer",
    "DataError",
    "Experiment",
    "ExperimentError",
    "LocalAnswer",
    "Paraphrase",
    "PhraseDPCells",
    "PrivateCells",
    "Question",
    "QuestionFile",
    "QuestionsFlow",
    "RemoteAnswer",
    "SimulatedModels",
    "build_flow",
    "hashed_embedder",
    "run_experiment",
    "sample_path",
    "write_outputs",
]

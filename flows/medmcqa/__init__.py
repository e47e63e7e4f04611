"""The MedMCQA privacy experiment: scenarios 1, 2, 4 and text-DP sanitisers x ε.

``run_experiment(QuestionFile(path), "out/")`` runs it and returns the accuracy table;
``flowkit run medmcqa --output out/`` does the same from a shell. See ``flows.medmcqa.flow``
for the graph and its building blocks, ``flows.medmcqa.experiment`` for the settings,
``flows.medmcqa.privacy`` for the mechanisms and ``flows.medmcqa.simulate`` for the offline
rule; ``flows/medmcqa/README.md`` for what each mechanism spends.
"""

from flows.medmcqa.data import DataError, Question, QuestionFile, sample_path
from flows.medmcqa.experiment import (
    DEFAULT_EPSILONS,
    Experiment,
    ExperimentError,
    MechanismOptions,
)
from flows.medmcqa.flow import (
    CellNode,
    CoTAnswer,
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
from flows.medmcqa.table import DEFAULT_SCENARIOS, SCENARIOS, AccuracyTable, Cell

__all__ = [
    "DEFAULT_EPSILONS",
    "DEFAULT_LIMITS",
    "DEFAULT_SCENARIOS",
    "SCENARIOS",
    "AccuracyTable",
    "Cell",
    "CellNode",
    "CoTAnswer",
    "DataError",
    "Experiment",
    "ExperimentError",
    "LocalAnswer",
    "MechanismOptions",
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

"""Local models for flowkit nodes: batched embeddings and generation, and model replicas.

Needs the ``ml`` extra (``pip install 'flowkit[ml]'``). Importing this package is cheap:
torch, transformers and sentence-transformers are imported where a model is loaded, in the
process that runs it, and a missing one raises ``flowkit.errors.MissingExtraError`` when a
node or backend is built.
"""

from nodes.models.embeddings import SentenceEncoder, default_model_path
from nodes.models.generation import TextGenerator
from nodes.models.nodes import EmbedNode, GenerateNode, ModelNode
from nodes.models.replicas import BatchFn, PoolClosedError, ReplicaFactory, ReplicaPool
from nodes.models.tiny import build_tiny_causal_lm

__all__ = [
    "BatchFn",
    "EmbedNode",
    "GenerateNode",
    "ModelNode",
    "PoolClosedError",
    "ReplicaFactory",
    "ReplicaPool",
    "SentenceEncoder",
    "TextGenerator",
    "build_tiny_causal_lm",
    "default_model_path",
]

"""cimforge.compiler.partition: partitioning layers across accelerators (HyPar, AccPar) and macros.

Training (the papers' model): :func:`plan_training` over ``2^H`` accelerators with strategies ``dp``, ``mp``,
``owt``, ``hypar``, ``accpar``. Inference on the cimforge fabric: :func:`plan_inference`. Topologies:
:func:`load_model` (names and ONNX files), :func:`load_onnx`, :func:`sequential`. See docs/partition.md.
"""

from .network import Edge, Layer, Network, PartitionError, UnknownOpWarning, chain, sequential
from .onnx_import import load_onnx
from .tables import PType
from .training import STRATEGIES, Accelerators, TrainingPlan, compare_strategies, plan_training
from .zoo import load_model

__all__ = [
    "Edge", "Layer", "Network", "PartitionError", "UnknownOpWarning", "chain", "sequential", "load_onnx", "PType",
    "STRATEGIES", "Accelerators", "TrainingPlan", "compare_strategies", "plan_training", "load_model",
]

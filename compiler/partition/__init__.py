"""cimforge.compiler.partition: partitioning layers across accelerators (HyPar, AccPar) and macros.

The partitioner works on the layer IR (:mod:`cimforge.golden.ir`): a quantized ``Graph`` or a shape-only
``ShapeGraph`` (float ONNX models, declared topologies). Training (the papers' model): :func:`plan_training` over
``2^H`` accelerators with strategies ``dp``, ``mp``, ``owt``, ``hypar``, ``accpar``. Inference on the cimforge
fabric: :func:`plan_inference`. Topologies: :func:`load_model` (names and ONNX files), :func:`load_onnx`,
:func:`sequential`; what the partitioner reads of them: :func:`dataflow`. See docs/partition.md.
"""

from .dataflow import Dataflow, Edge, PartitionError, UnknownOpWarning, dataflow
from .inference import compare_inference, plan_inference
from .tables import PType
from .training import STRATEGIES, Accelerators, TrainingPlan, compare_strategies, plan_training
from .zoo import load_model, load_onnx, sequential

__all__ = [
    "Dataflow", "Edge", "PartitionError", "UnknownOpWarning", "dataflow", "sequential", "load_onnx", "PType",
    "STRATEGIES", "Accelerators", "TrainingPlan", "compare_strategies", "plan_training", "load_model",
    "plan_inference", "compare_inference",
]

"""Partitioning figures: strategy totals on AlexNet (batch 512, 128 accelerators), VGG-19 and ResNet-50, search
times at 1024 accelerators, and the inference mappings of the digits CNN and a scaled real topology.

Run: .venv/bin/python bench/bench_partition.py
"""

from __future__ import annotations

import time

from cimforge.compiler.partition import compare_strategies, load_model, plan_training
from cimforge.compiler.partition.fabric_cost import analytic_layer_cost
from cimforge.compiler.partition.inference import compare_inference, scale_to_fabric
from cimforge.compiler.partition.report import format_table, inference_summary_rows, strategy_rows
from cimforge.config import CimConfig, FabricConfig, MacroConfig
from cimforge.presets import get_preset


def main() -> int:
    for model, n in (("alexnet", 128), ("vgg19", 128), ("resnet50", 128), ("vgg19", 1024), ("resnet50", 1024)):
        net = load_model(model)
        print(f"\n== {model}, {n} accelerators, batch 512 (millions of elements; x2 bytes)")
        print(format_table(*strategy_rows(compare_strategies(net, n, 512))))
    print("\n== search time at 1024 accelerators (10 levels), batch 512, best of 3")
    worst = 0.0
    for model in ("resnet50", "vgg19", "inception_v1", "densenet121"):
        t_load = time.perf_counter()
        net = load_model(model)
        t_load = time.perf_counter() - t_load
        for strategy in ("hypar", "accpar"):
            best = min(_timed(lambda: plan_training(net, 1024, 512, strategy)) for _ in range(3))
            if model in ("resnet50", "vgg19"):
                worst = max(worst, best)
            print(f"{model:12s} {strategy:6s} search {best:.3f} s (model load {t_load:.3f} s)")
    print(f"ResNet-50 / VGG-19 slowest search: {worst:.3f} s (limit 2 s): {'OK' if worst < 2 else 'TOO SLOW'}")

    print("\n== inference: digits CNN on the default fabric (4 macros), batch 1 and 16")
    for batch in (1, 16):
        print(format_table(*inference_summary_rows(compare_inference(load_model("digits"), get_preset("default"), batch))))
    big = CimConfig(name="big", macro=MacroConfig(rows=64, pages=16, cols=64), fabric=FabricConfig(n_macros=64))
    # scaled AlexNet keeps a grouped convolution of 6-channel groups, which the fabric's compiler cannot map
    # (groups must be whole 8-channel words): it is priced with the analytic model, SqueezeNet with the compiler's
    for model, cost in (("alexnet", analytic_layer_cost), ("squeezenet", None)):
        net = scale_to_fabric(load_model(model), big, spatial_div=4)
        print(f"\n== inference: {net.name} on 64 macros 64x64x16 pages, batch 4")
        plans = compare_inference(net, big, 4, layer_cost=cost)
        print(format_table(*inference_summary_rows(plans)))
        print(f"cycle model: {plans['search'].cycle_model}")
    return 0 if worst < 2 else 1


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    raise SystemExit(main())

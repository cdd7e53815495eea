"""Named presets: copies of the default configuration with a few fields changed."""

from __future__ import annotations

from dataclasses import replace

from .config import CimConfig, ConfigError, ControllerConfig, FabricConfig, MacroConfig

__all__ = ["PRESETS", "get_preset"]

DEFAULT = CimConfig(name="default")

PRESETS: dict[str, CimConfig] = {
    # Small enough for every fast test and for Amaranth-simulator unit tests.
    "tiny": replace(DEFAULT, name="tiny", macro=MacroConfig(rows=8, pages=2, cols=16),
                    fabric=FabricConfig(n_macros=2)),
    # The demo (make sim runs the digits CNNs) and the MLPerf Tiny models (golden.model_sets.TINY_SET: their
    # tensors and large weights live in the external memory, staged by DMA). The parameter, descriptor and
    # program memories, which no DMA reaches, are sized for those models (they need up to 685, 104 and 3967
    # words), and the trace holds a stamp for every instruction of their programs (tests/test_tiny_set_rtl.py).
    "default": replace(DEFAULT, fabric=replace(DEFAULT.fabric, param_depth=1024, desc_depth=128),
                       controller=replace(DEFAULT.controller, program_depth=8192, trace_depth=8192)),
    # The ISSCC 2022 11.7 macro's organisation: 32 rows summed per output, 16 wordlines per compartment,
    # 64 bitlines, signed INT8 x INT8 with a 21-bit result; two macros as in the ZigZag-IMC model.
    "isscc22": replace(DEFAULT, name="isscc22", macro=MacroConfig(rows=32, pages=16, cols=64),
                       fabric=FabricConfig(n_macros=2)),
    # The ImageNet set (ResNet-50, SqueezeNet, ... at 224x224): 16 macros of the default rows and columns with
    # 32 pages (a reduction is never spilled, so a dense layer's K-split over the 16 macros must fit them:
    # VGG-19's fc6, 25 088 inputs, needs 25; ZFNet-512's 18, AlexNet's 9), on-chip buffers of 64 K words
    # (activation tiles with their halo; weight page images streamed through), and an external memory of 32 M
    # words (8 bytes each: VGG-19's 143.7 M weights and every activation tensor take 20.1 M). Parameters:
    # DenseNet-121's 363 unfoldable per-channel affines need 17 089 words (the parameter memory is not streamed);
    # descriptors: DenseNet-121 needs 2121 words. Program and trace memories of 128 K words: ResNet-50 in row bands is 60 K instructions,
    # and no DMA fetches instructions (a simulation convenience: 7 MB of program memory is not what silicon
    # would have). docs/memory.md section 10: what each ImageNet model needs, and why these sizes.
    "imagenet": replace(DEFAULT, name="imagenet", macro=MacroConfig(pages=32),
                        fabric=FabricConfig(n_macros=16, act_depth=65536, weight_depth=65536, param_depth=17408,
                                            desc_depth=4096, ext_depth=1 << 25),
                        controller=ControllerConfig(program_depth=1 << 17, trace_depth=1 << 17, load_queue=16)),
}


def get_preset(name: str) -> CimConfig:
    """The preset called ``name``.

    Raises
    ------
    ConfigError
        No such preset; the message lists the known ones.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError("preset", name, "one of " + ", ".join(PRESETS)) from None

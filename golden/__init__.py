"""cimforge.golden: the numpy reference of quantized CNN inference.

:mod:`~cimforge.golden.ir` (the layer IR shared with the compiler), :mod:`~cimforge.golden.requant`,
:mod:`~cimforge.golden.ops`, :mod:`~cimforge.golden.runner`, :mod:`~cimforge.golden.onnx_import`,
:mod:`~cimforge.golden.compare` (judged by onnxruntime), :mod:`~cimforge.golden.macro` (the CIM macro).
Submodules are imported explicitly so that importing the package stays cheap. See docs/golden.md.
"""

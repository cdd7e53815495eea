"""The committed model fixtures, shipped as package data of ``cimforge.models``.

The folder stays at the top of the source tree (the design card's ``models/``); pyproject maps the package
``cimforge.models`` onto it, so editable and non-editable installs both find the files through
:data:`cimforge.golden.datasets.MODELS_DIR`. ``make_digits_models.py`` (the script that made them, needs the
optional ``train`` extra) stays runnable as ``python models/make_digits_models.py``.
"""

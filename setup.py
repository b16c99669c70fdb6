"""Build hook: the cffi packet core is compiled at install time (out-of-line API mode).

Everything else about the package lives in pyproject.toml; setuptools needs this file only
because `cffi_modules` has no pyproject spelling.
"""

from setuptools import setup

setup(cffi_modules=["csrc/build_core.py:ffibuilder"])

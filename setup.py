"""The optional C extension, built on CPython with a GIL only; everything else is in pyproject.toml.

PyPy could compile it through its C API emulation, and a free-threaded build
would turn the GIL back on to import it: on both, the handler runs its Python
code (see logdna_client/_speedups.c). Without a compiler the install still
succeeds (``optional``).
"""

import platform
import sysconfig

from setuptools import Extension, setup

ext_modules = []
if platform.python_implementation() == "CPython" and not sysconfig.get_config_var(
    "Py_GIL_DISABLED"
):
    ext_modules.append(
        Extension("logdna_client._speedups", ["logdna_client/_speedups.c"], optional=True)
    )

setup(ext_modules=ext_modules)

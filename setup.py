"""Build the single Cython extension, ``firehose._core``.

Metadata lives in ``pyproject.toml``; this file only knows how to compile.
Environment switches:

* ``FIREHOSE_DEBUG=1``   line tracing, bounds checks, ``-O0 -g``
* ``FIREHOSE_ANNOTATE=1`` write Cython's HTML annotation next to the source
* ``FIREHOSE_FORCE_CYTHON=1`` re-cythonize even when the ``.c`` looks fresh
"""
import os

import numpy
import pyarrow
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FIREHOSE_DEBUG") == "1"

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": DEBUG,
    "embedsignature": True,
}
macros = [("XXH_INLINE_ALL", None), ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if DEBUG:
    directives["linetrace"] = True
    macros += [("CYTHON_TRACE_NOGIL", "1")]
    cflags = ["-O0", "-g3"]
else:
    cflags = ["-O3", "-fno-strict-aliasing"]

ext = Extension(
    "firehose._core",
    ["src/firehose/_core.pyx"],
    depends=["src/firehose/_core_fast.h", "src/firehose/_core_fast_tree.h"],   # the fast scan (twice: baseline, AVX2)
    include_dirs=[numpy.get_include(), pyarrow.get_include()],
    define_macros=macros,
    extra_compile_args=cflags,
)

setup(
    ext_modules=cythonize(
        [ext],
        compiler_directives=directives,
        annotate=os.environ.get("FIREHOSE_ANNOTATE") == "1",
        force=os.environ.get("FIREHOSE_FORCE_CYTHON") == "1",
    ),
)

"""Build the Cython kernels.

``NNCORE_DEBUG=1 pip install .`` rebuilds them with bounds and wraparound checks on, so an
out-of-bounds access raises instead of reading garbage.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("NNCORE_DEBUG", "0") not in ("", "0")

directives = {
    "language_level": "3",
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
}

# -O3 but no -march=native: the wheel must run on any x86-64 / aarch64 CPU.
# -fno-trapping-math only promises that nncore installs no floating-point trap handlers; it
# changes no result (NaN and inf behave as IEEE says) and lets GCC turn the clamps and
# selects of the activation loops into vector blends, so those loops vectorise.
# -fno-math-errno: nncore never reads errno, so sqrt need not set it; this lets GCC use the
# vector square root in Adam's update loop (with errno, each sqrt may call the C library).
compile_args = ["-O0", "-g"] if DEBUG else ["-O3", "-fno-trapping-math", "-fno-math-errno"]

extensions = [
    Extension(
        "nncore._kernels",
        ["src/nncore/_kernels.pyx"],
        # _kernels.pxd does `cdef extern from "_simd.h"`: the header sits next to the .pyx
        # (and the generated .c), and this puts its folder on the compiler's include path
        # whatever the directory the C file is compiled from.
        include_dirs=["src/nncore"],
        depends=["src/nncore/_simd.h", "src/nncore/_team.h", "src/nncore/_kernels.pxd"],
        extra_compile_args=compile_args,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
]

# The generated C goes to a folder of its own per mode: cythonize regenerates a .c only when
# its .pyx/.pxd changed, so with one shared file switching NNCORE_DEBUG would compile the
# other mode's stale C.
setup(ext_modules=cythonize(extensions, compiler_directives=directives,
                            compile_time_env={"NNCORE_DEBUG": DEBUG},
                            build_dir="build/cython-debug" if DEBUG else "build/cython"))

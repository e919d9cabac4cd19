"""Builds the compiled event core, fasttune._core, from fasttune/_core.pyx.

Everything else about the package lives in pyproject.toml.  When Cython or a C
compiler is missing the build fails loudly: the pure-Python twin exists for
differential testing (FASTTUNE_PUREPYTHON=1), not as a silent substitute.
"""
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "fasttune._core",
        ["fasttune/_core.pyx"],
        extra_compile_args=["-O2"],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
    )
)

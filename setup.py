"""Only the optional C extension lives here; the project metadata is in pyproject.toml.

``dialogsmith._fastjson`` is the native fast path of the dump parser. It is optional: without a C
compiler the package installs and runs on the pure Python path (same output, slower)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dialogsmith._fastjson",
            ["src/dialogsmith/_fastjson.c"],
            extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wno-unused-function"],
            optional=True,
        )
    ]
)

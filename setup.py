"""The compiled part of the project: built by the ordinary ``pip install`` (metadata in
pyproject.toml). gateway/_fastsend.c: batched non-blocking UDP sends for the media paths."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("gateway._fastsend", ["gateway/_fastsend.c"],
                             extra_compile_args=["-O2", "-Wall"])])

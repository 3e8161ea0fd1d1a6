"""The compiled part of the project: built by the ordinary ``pip install`` (metadata in
pyproject.toml). native/_fastsend.c: batched non-blocking UDP sends for the media paths;
native/_mixcore.c: the phone mixer's arithmetic and G.711 table lookups."""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("native._fastsend", ["native/_fastsend.c"], extra_compile_args=["-O2", "-Wall"]),
    Extension("native._mixcore", ["native/_mixcore.c"], extra_compile_args=["-O2", "-Wall"]),
])

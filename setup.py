"""The compiled part of the project, built by the ordinary ``pip install`` (metadata in
pyproject.toml):

- native/_fastsend.c: batched non-blocking UDP sends for the media paths;
- native/_egress.c: the bridge's SRTP (libsrtp called from C) and batched sends;
- native/_mixcore.c: the phone mixer's arithmetic and G.711 table lookups;
- native/_plc.c: packet loss concealment's pitch search and loop;
- the phone legs' per-packet and per-tick modules (COMPILED below), compiled from their own
  Python source by Cython: one implementation, the .py; a .pxd beside a module gives its
  classes C types (gateway/media/jitterbuffer.pxd). Each runs as plain Python where it is
  not built (a worktree without ``make``), and tests/unit/native/test_compiled.py fails when
  a built one is older than its source.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

#: modules on every phone packet's path, measured with callgrind in docs/benchmarks.md
COMPILED = [
    "gateway/media/jitterbuffer.py",
    "gateway/media/stats.py",
    "gateway/media/rtp_source.py",
    "gateway/media/plc.py",
    "gateway/rtp_session.py",
    "gateway/rtp_endpoint.py",
    "gateway/mixer.py",
    "gateway/mixer_parts.py",
    "gateway/call.py",
    "native/sendbatch.py",
    "gateway/media/codecs.py",
    "gateway/media/g711.py",
    # the bridge's per-forwarded-packet loop and the per-source state it reads
    "bridge/fanout.py",
    "bridge/rtcp_feedback.py",
]

setup(ext_modules=[
    Extension("native._fastsend", ["native/_fastsend.c"], depends=["native/udp_send.h"],
              extra_compile_args=["-O2", "-Wall"]),
    Extension("native._egress", ["native/_egress.c"], depends=["native/udp_send.h"],
              extra_compile_args=["-O2", "-Wall"]),
    Extension("native._mixcore", ["native/_mixcore.c"], depends=["native/buffers.h"],
              extra_compile_args=["-O2", "-Wall"]),
    Extension("native._plc", ["native/_plc.c"], depends=["native/buffers.h"],
              extra_compile_args=["-O2", "-Wall"]),
    *cythonize(COMPILED, build_dir="build/cython", quiet=True,
               compiler_directives={"language_level": "3", "annotation_typing": False}),
])

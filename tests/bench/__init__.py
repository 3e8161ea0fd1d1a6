"""`make bench`: the figures of the issue's section 6, measured against a live server.

Run `python -m tests.bench` from the repository root (see `python -m tests.bench --help`).
Modules: `callrate` (call setup rate, RFC 7502 style), `legs` (phone legs mixed in real
time, CPU per leg), `memory` (RSS per idle and per active call), `common` (the server under
test pinned to one core, /proc readings, sipp helpers). `bench_mixer.py` is a separate
micro-benchmark of the mixer alone.
"""

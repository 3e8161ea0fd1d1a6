"""Drivers for the real SIP peers that integration tests run on 127.0.0.1.

- `procs`: start a process under a `timeout` wrapper with its log in a file, stop it by PID,
  find free ports on 127.0.0.1.
- `sipp`: run sipp scenarios (built-in uac/uas or XML) and parse their result; generate the
  dial-in scenarios (PIN digits as RFC 2833 pcaps).
- `baresip`: a softphone instance with its own config folder, driven over ctrl_tcp.
- `kamailio`: a minimal proxy and registrar (a PBX or carrier stand-in).
- `audio`: make tones, measure recordings (dominant frequency, RMS, Goertzel).

Every process is bounded in time and stopped by PID; `procs.stop_all()` stops whatever is
still running at the end of a session.
"""

"""Compiled helpers for the media paths, shared by the gateway and the bridge (a leaf: it
imports none of the project's packages, like a third-party library would be).

- ``native._fastsend`` (native/_fastsend.c): ``send_batch(items)``, many UDP datagrams in
  one call, built by the ordinary ``pip install`` of the project (setup.py);
- ``native.sendbatch.SendBatch``: the queue in front of it (the phone legs' ticks);
- ``native._egress`` (native/_egress.c): the bridge's way out to browsers: libsrtp called
  from C on pylibsrtp's own contexts (``native.srtp``), a send buffer flushed once per
  event-loop turn, a sink per endpoint that rewrites, protects and queues a forwarded packet
  in one call;
- ``native/udp_send.h``: what the two C senders share (a numeric address into a sockaddr,
  runs of datagrams out with ``sendmmsg``);
- ``native/buffers.h``: what ``_mixcore`` and ``_plc`` share: a checked buffer of samples;
- ``native._mixcore`` (native/_mixcore.c): ``mix(...)``, one room's N-1 mixes in one call,
  and ``lut_encode``/``lut_decode``, G.711's table lookups (the tables stay in
  gateway/media/g711.py);
- ``native._plc`` (native/_plc.c): ``extend(...)``, packet loss concealment's pitch search
  and pitch-periodic loop (the rest of the concealer stays in gateway/media/plc.py).
"""

# Types for the compiled build of rtcp_feedback.py (Cython, pure Python mode): the .py is the
# implementation, this only says what the attributes hold. Every forwarded packet reads a
# Projection and its receiver's EndpointState (bridge/fanout.py); every received one goes
# through ReceiveStats.on_packet and TransportCcRecorder.record.

cdef class PacketHistory:
    cdef public list _data, _ext
    cdef public long long _size, count

cdef class ReceiveStats:
    cdef public double _last_arrival, jitter, sr_at
    cdef public long long _last_ts, _rr_expected, _rr_received, _st_expected, _st_received
    cdef public long long base_ext, bytes, max_ext, received
    cdef public object sr_ntp  # 64-bit NTP, unsigned
    cdef public int clock_rate

cdef class TransportCcRecorder:
    cdef public dict _arrivals
    cdef public long long _fb_count, _max_ext, _next_base

cdef class EndpointState:
    cdef public bint audio_forced_off
    cdef public double downlink_loss, remb_at
    cdef public object group, id, receive, rtt, output, speaker, sources, unknown_ssrcs
    cdef public long long in_bytes, out_bytes, stat_in, stat_out, remb, twcc_seq
    cdef public int last_n
    cdef public dict projections
    cdef public TransportCcRecorder twcc

cdef class SourceState:
    cdef public bint audio, screen
    cdef public object endpoint, history, media, out, sr_times, upstream_nacks
    cdef public double keyframe_asked
    cdef public long long ssrc
    cdef public ReceiveStats rx

cdef class Projection:
    cdef public bint attached, pending
    cdef public object last_out
    cdef public long long offset, start_ext
    cdef public EndpointState receiver
    cdef public SourceState source

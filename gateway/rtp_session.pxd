# Types for the compiled build of rtp_session.py (Cython, pure Python mode): the .py is the
# implementation, this only says what the attributes hold. Every phone packet in and out
# passes through an RtpSession.
from gateway.media.jitterbuffer cimport JitterBuffer
from gateway.media.stats cimport RtcpStats

cdef class RtpSession:
    cdef public object call_id, bind_host
    cdef public double media_timeout, rtcp_interval, check_interval
    cdef public int dtmf_duration_ms
    cdef public object on_dtmf, on_timeout, on_audio_packet
    cdef public int local_port, fileno
    cdef public object batch, counters, policy
    cdef public object srtp_tx, srtp_rx
    cdef public long long ssrc
    cdef public RtcpStats _stats
    cdef object _allocator, _loop, _rtp, _rtcp, _check_handle
    cdef bint _closed
    cdef object _codec
    cdef int _audio_pt, _dtmf_pt
    cdef object _dest
    cdef bint _sending, _expect_rtp
    cdef JitterBuffer _jb
    cdef object _decoder, _dtmf_rx, _last_rx
    cdef double _timeout_base
    cdef bint _timed_out
    cdef long long _seq, _ts
    cdef int _step
    cdef bint _marker_next
    cdef object _dtmf_queue, _dtmf_handle
    cdef bint _dtmf_active

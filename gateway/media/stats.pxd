# Types for the compiled build of stats.py (Cython, pure Python mode): the .py is the
# implementation, this only says what the attributes hold. Every received and sent packet
# passes here.

cdef class ReceiverStats:
    cdef public long long ssrc
    cdef public int clock_rate
    cdef public long long max_seq, cycles, base_seq, bad_seq, probation
    cdef public long long received, expected_prior, received_prior, last_sr
    cdef public double jitter
    cdef int _min_sequential
    cdef bint _started
    cdef object _transit, _last_sr_time

cdef class SenderStats:
    cdef public int clock_rate
    cdef public long long packet_count, octet_count, last_timestamp
    cdef public object last_send_time

cdef class RtcpStats:
    cdef public long long ssrc
    cdef public int clock_rate
    cdef public str cname
    cdef public double interval
    cdef public SenderStats sender
    cdef public dict sources
    cdef public object rtt, next_report
    cdef public bint remote_bye
    cdef bint _sent_since_report

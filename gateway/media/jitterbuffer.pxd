# Types for the compiled build of jitterbuffer.py (Cython, pure Python mode): the .py is the
# implementation, this only says what the attributes and private methods hold.
cdef long long _MOD32, _HALF32, _NO_LEVEL

cdef class JitterFrame:
    cdef readonly object kind
    cdef readonly bytes payload
    cdef readonly long long timestamp
    cdef readonly bint marker

cdef class JitterBuffer:
    cdef public int clock_rate
    cdef public int frame_ticks
    cdef public object bytes_per_tick
    cdef public object stats
    cdef object _packet_ticks
    cdef double _min_s, _max_s, _start_peak, _shrink_rate, _creep, _peak
    cdef long long _max_ticks, _newest_end, _target_ticks, _window_min
    cdef int _shrink_window, _shrink_defer, _conceal_frames
    cdef int _dry_pops, _window_pops, _drop_due, _quiet
    cdef object _ssrc, _play, _last_seq, _cont_end, _floor, _last_put
    cdef dict _buf
    cdef bint _playing, _next_marker

    cdef void _observe(self, long long ts, double now)
    cdef long long _ticks_for(self, double peak)
    cdef void _resync(self, long long timestamp)
    cdef void _restart(self, long long timestamp)
    cdef void _trim(self, long long new_play, long long arriving)
    cdef object _dry(self)
    cdef object _assemble(self, long long play, long long frame_end)
    cdef object _missing(self, long long play, long long frame_end)
    cdef void _shrink_check(self, long long level)
    cdef tuple _due_drop(self, long long play, long long level)

# Types for the compiled build of fanout.py (Cython, pure Python mode).
cimport cython
from bridge.rtcp_feedback cimport EndpointState, Projection, SourceState

@cython.locals(p=Projection, r=EndpointState, size=Py_ssize_t, keyframe=int, sent=int,
               need=bint, out_seq=long, t=long)
cpdef tuple fan_out(SourceState src, bytes data, long long ext, long seq, long twcc,
                    object send, int vp8, int h264)

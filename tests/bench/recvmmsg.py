"""recvmmsg(2) for the benches' load generators, through ctypes: many datagrams of one
socket in one system call, into one reused buffer, without an exception when the socket is
empty (a plain ``sock.recv`` loop pays a system call per datagram and a raised
BlockingIOError per drain, which made the bridge bench's generator run out of its core
before the bridge did).

    reader = MmsgReader(batch=64, size=2048)
    n = reader.read(fd)            # datagrams now in reader.buffer, -1 on an error
    for i in range(n):
        off, length = reader.offset(i), reader.length(i)

Linux only (the benches' machine); one reader per thread (it reuses its buffers).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct

MSG_DONTWAIT = 0x40


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_IoVec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_recvmmsg = _libc.recvmmsg
_recvmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int,
                      ctypes.c_void_p]
_recvmmsg.restype = ctypes.c_int
_LEN_AT = _MMsgHdr.msg_len.offset
_STRIDE = ctypes.sizeof(_MMsgHdr)
_U32 = struct.Struct("I")


class MmsgReader:
    def __init__(self, batch: int = 64, size: int = 2048) -> None:
        self.batch, self.size = batch, size
        self._raw = (ctypes.c_char * (batch * size))()
        self.buffer = memoryview(self._raw).cast("B")  # datagram i at offset(i)
        self._iov = (_IoVec * batch)()
        self._msgs = (_MMsgHdr * batch)()
        base = ctypes.addressof(self._raw)
        for i in range(batch):
            self._iov[i].iov_base = base + i * size
            self._iov[i].iov_len = size
            self._msgs[i].msg_hdr.msg_iov = ctypes.pointer(self._iov[i])
            self._msgs[i].msg_hdr.msg_iovlen = 1
        self._headers = memoryview(self._msgs).cast("B")
        self.errno = 0

    def read(self, fd: int) -> int:
        """Datagrams read now (0: none waiting; -1: another error, errno in .errno)."""
        n: int = _recvmmsg(fd, self._msgs, self.batch, MSG_DONTWAIT, None)
        if n < 0:
            self.errno = ctypes.get_errno()
            if self.errno in (11, 4):  # EAGAIN, EINTR
                return 0
        return n

    def offset(self, i: int) -> int:
        return i * self.size

    def length(self, i: int) -> int:
        length: int = _U32.unpack_from(self._headers, i * _STRIDE + _LEN_AT)[0]
        return length

    def datagram(self, i: int) -> bytes:
        off = i * self.size
        return bytes(self.buffer[off:off + self.length(i)])

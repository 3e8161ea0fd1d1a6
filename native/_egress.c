/* native._egress: SRTP and batched UDP sends for the bridge's browser endpoints, in C.
 *
 * Measured (docs/benchmarks.md, "Bridge"): forwarding one audio packet to a browser cost
 * 10-13 us of CPU, of which pylibsrtp's Python wrapper around one srtp_protect() call took
 * about a third, and building a rewritten copy, a tuple per datagram and the address
 * parsed again per datagram most of the rest. Here the same libsrtp functions (pylibsrtp's
 * own copy of libsrtp: native/srtp.py hands their addresses over once, so there is one
 * libsrtp and one SRTP context per direction) are called straight from C.
 *
 * Srtp(owner, ctx)            one direction's SRTP context (a pylibsrtp Session's srtp_t);
 *                             protect / protect_rtcp / unprotect / unprotect_rtcp -> bytes,
 *                             SrtpError(status) when libsrtp refuses.
 * Egress(flush_soon=None)     the datagrams of one event-loop turn, each in its own slot of
 *                             a preallocated buffer; flush() sends them with one sendmmsg
 *                             per run of one socket, the interpreter lock released. Given
 *                             flush_soon (loop.call_soon), the first datagram after a
 *                             flush schedules the next flush; without it every datagram
 *                             goes out at once. A full buffer is flushed at once. A
 *                             datagram the kernel will not take now (EAGAIN, ENOBUFS) is
 *                             dropped and counted: the loop never waits.
 * Sink(egress, nominated, reselect)
 *                             one endpoint's way out: send(packet) protects RTP or RTCP
 *                             (by the RTCP packet types 192-223, RFC 5761) and queues it;
 *                             forward(packet, seq, twcc_pos, twcc) writes a new sequence
 *                             number (and transport-wide sequence number at twcc_pos when
 *                             >= 0) into the queued copy first, as bridge.rtp.with_sequence
 *                             does (which is this module's with_sequence). The ICE pair is
 *                             the nominated dict's entry 1: when it is no longer the pair
 *                             set with set_pair(), reselect() is called (it calls set_pair
 *                             again). A pair on another socket (ICE-TCP, TURN) has fd -1:
 *                             its protected packets go to its send(data, addr) callable.
 *                             Both return False when the packet was not sent (no keys, no
 *                             pair, closed, SRTP refused it, too long), never raise for
 *                             those; the counters say which.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "udp_send.h"

#define SLOT 1500            /* bytes per datagram, as pylibsrtp's own buffer */
#define SRTP_TRAILER 144     /* SRTP_MAX_TRAILER_LEN: tag + MKI */
#define SRTCP_TRAILER 148    /* SRTP_MAX_SRTCP_TRAILER_LEN: + the SRTCP index */
#define CAPACITY 1024        /* datagrams queued before a flush is forced */

typedef int (*srtp_fn)(void *ctx, void *buf, int *len);
static srtp_fn f_protect, f_protect_rtcp, f_unprotect, f_unprotect_rtcp;
static PyObject *SrtpError;
static PyObject *ONE; /* the nominated dict's key: ICE component 1 */

static int is_rtcp(const unsigned char *p, Py_ssize_t n) { return n > 1 && p[1] > 191 && p[1] < 224; }

/* --- Srtp ------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    void *ctx;
    PyObject *owner; /* keeps the srtp_t alive (pylibsrtp deallocates it with its Session) */
} SrtpObject;

static PyTypeObject SrtpType;

static PyObject *Srtp_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"owner", "ctx", NULL};
    PyObject *owner;
    unsigned long long ctx;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OK", kwlist, &owner, &ctx)) return NULL;
    if (ctx == 0) {
        PyErr_SetString(PyExc_ValueError, "no SRTP context");
        return NULL;
    }
    if (f_protect == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind_libsrtp() was not called");
        return NULL;
    }
    SrtpObject *self = (SrtpObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->ctx = (void *)(uintptr_t)ctx;
    Py_INCREF(owner);
    self->owner = owner;
    return (PyObject *)self;
}

static void Srtp_dealloc(SrtpObject *self) {
    Py_XDECREF(self->owner);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *srtp_process(SrtpObject *self, PyObject *arg, srtp_fn fn, int trailer) {
    char buf[SLOT];
    char *data;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(arg, &data, &n) < 0) return NULL;
    if (n > SLOT - trailer) {
        PyErr_SetString(PyExc_ValueError, "packet is too long");
        return NULL;
    }
    memcpy(buf, data, (size_t)n);
    int len = (int)n;
    int status = fn(self->ctx, buf, &len);
    if (status != 0) {
        PyObject *exc = PyObject_CallFunction(SrtpError, "i", status);
        if (exc != NULL) {
            PyErr_SetObject(SrtpError, exc);
            Py_DECREF(exc);
        }
        return NULL;
    }
    return PyBytes_FromStringAndSize(buf, len);
}

static PyObject *Srtp_protect(SrtpObject *s, PyObject *a) { return srtp_process(s, a, f_protect, SRTP_TRAILER); }
static PyObject *Srtp_protect_rtcp(SrtpObject *s, PyObject *a) { return srtp_process(s, a, f_protect_rtcp, SRTCP_TRAILER); }
static PyObject *Srtp_unprotect(SrtpObject *s, PyObject *a) { return srtp_process(s, a, f_unprotect, 0); }
static PyObject *Srtp_unprotect_rtcp(SrtpObject *s, PyObject *a) { return srtp_process(s, a, f_unprotect_rtcp, 0); }

static PyMethodDef Srtp_methods[] = {
    {"protect", (PyCFunction)Srtp_protect, METH_O, "protect(rtp) -> srtp"},
    {"protect_rtcp", (PyCFunction)Srtp_protect_rtcp, METH_O, "protect_rtcp(rtcp) -> srtcp"},
    {"unprotect", (PyCFunction)Srtp_unprotect, METH_O, "unprotect(srtp) -> rtp"},
    {"unprotect_rtcp", (PyCFunction)Srtp_unprotect_rtcp, METH_O, "unprotect_rtcp(srtcp) -> rtcp"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SrtpType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "native._egress.Srtp",
    .tp_basicsize = sizeof(SrtpObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One direction's SRTP context: Srtp(owner, ctx) (native/srtp.py makes them).",
    .tp_new = Srtp_new,
    .tp_dealloc = (destructor)Srtp_dealloc,
    .tp_methods = Srtp_methods,
};

/* --- Egress ---------------------------------------------------------------------------- */

struct SinkObject;

typedef struct {
    udp_dgram_t d;           /* fd, iov (into data), address */
    struct SinkObject *sink; /* a reference: a sink closed before the flush is skipped */
    char data[SLOT];
} slot_t;

typedef struct {
    PyObject_HEAD
    slot_t *slots;
    int count;
    int flushing;
    PyObject *flush_soon; /* None: send at once */
    unsigned long long flushes, sent, dropped, failed, skipped, max_batch;
} EgressObject;

typedef struct SinkObject {
    PyObject_HEAD
    EgressObject *egress;
    SrtpObject *tx;       /* NULL until the keys are there */
    PyObject *nominated;  /* aioice's dict: component -> pair */
    PyObject *reselect;   /* () -> None: calls set_pair() */
    PyObject *pair;       /* NULL: none */
    PyObject *pair_send;  /* fd < 0: send(data, addr) */
    PyObject *pair_addr;
    int fd;
    int closed;
    socklen_t addrlen;
    struct sockaddr_storage addr;
    unsigned long long packets_sent, bytes_sent, protect_errors, dropped;
} SinkObject;

static PyTypeObject EgressType;
static PyTypeObject SinkType;

static PyObject *Egress_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"flush_soon", NULL};
    PyObject *flush_soon = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O", kwlist, &flush_soon)) return NULL;
    EgressObject *self = (EgressObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->slots = PyMem_Calloc(CAPACITY, sizeof(slot_t));
    if (self->slots == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    Py_INCREF(flush_soon);
    self->flush_soon = flush_soon;
    return (PyObject *)self;
}

static Py_ssize_t egress_flush(EgressObject *self) {
    int n = self->count;
    if (n == 0 || self->flushing) return 0;
    self->flushing = 1;
    udp_dgram_t **items = PyMem_Malloc((size_t)n * sizeof(udp_dgram_t *));
    int m = 0;
    unsigned long long sent = 0, dropped = 0, failed = 0;
    if (items == NULL) {
        self->failed += (unsigned long long)n;
    } else {
        for (int i = 0; i < n; i++) {
            slot_t *s = &self->slots[i];
            if (s->sink->closed) self->skipped++;
            else items[m++] = &s->d;
        }
        if (m > 0) {
            Py_BEGIN_ALLOW_THREADS
            udp_send(items, m, &sent, &dropped, &failed);
            Py_END_ALLOW_THREADS
        }
        PyMem_Free(items);
    }
    self->flushes++;
    if ((unsigned long long)m > self->max_batch) self->max_batch = (unsigned long long)m;
    self->sent += sent;
    self->dropped += dropped;
    self->failed += failed;
    self->count = 0;
    for (int i = 0; i < n; i++) {
        PyObject *sink = (PyObject *)self->slots[i].sink;
        self->slots[i].sink = NULL;
        Py_XDECREF(sink);
    }
    self->flushing = 0;
    return (Py_ssize_t)sent;
}

static PyObject *Egress_flush(EgressObject *self, PyObject *unused) {
    (void)unused;
    return PyLong_FromSsize_t(egress_flush(self));
}

/* A free slot; schedules the next flush for the first one. NULL with an exception set
 * only if scheduling failed. */
static slot_t *egress_slot(EgressObject *self) {
    if (self->count >= CAPACITY) egress_flush(self);
    if (self->count == 0 && self->flush_soon != Py_None) {
        PyObject *flush = PyObject_GetAttrString((PyObject *)self, "flush");
        if (flush == NULL) return NULL;
        PyObject *r = PyObject_CallOneArg(self->flush_soon, flush);
        Py_DECREF(flush);
        if (r == NULL) return NULL;
        Py_DECREF(r);
    }
    return &self->slots[self->count];
}

static void Egress_dealloc(EgressObject *self) {
    if (self->slots != NULL) {
        for (int i = 0; i < self->count; i++) Py_XDECREF((PyObject *)self->slots[i].sink);
        PyMem_Free(self->slots);
    }
    Py_XDECREF(self->flush_soon);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Egress_len_get(EgressObject *self, void *c) { (void)c; return PyLong_FromLong(self->count); }

static PyObject *Egress_stats(EgressObject *self, PyObject *unused) {
    (void)unused;
    return Py_BuildValue("{sKsKsKsKsKsK}", "flushes", self->flushes, "sent", self->sent,
                         "dropped", self->dropped, "failed", self->failed, "skipped",
                         self->skipped, "max_batch", self->max_batch);
}

static PyMethodDef Egress_methods[] = {
    {"flush", (PyCFunction)Egress_flush, METH_NOARGS,
     "flush() -> int: send everything queued, in order; the datagrams the kernel took"},
    {"stats", (PyCFunction)Egress_stats, METH_NOARGS,
     "stats() -> dict: flushes, sent, dropped, failed, skipped, max_batch"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Egress_getset[] = {
    {"pending", (getter)Egress_len_get, NULL, "datagrams queued", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject EgressType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "native._egress.Egress",
    .tp_basicsize = sizeof(EgressObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The bridge's datagrams of one event-loop turn: Egress(flush_soon=None).",
    .tp_new = Egress_new,
    .tp_dealloc = (destructor)Egress_dealloc,
    .tp_methods = Egress_methods,
    .tp_getset = Egress_getset,
};

/* --- Sink ------------------------------------------------------------------------------ */

static PyObject *Sink_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"egress", "nominated", "reselect", NULL};
    PyObject *egress, *nominated, *reselect;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O", kwlist, &EgressType, &egress,
                                     &PyDict_Type, &nominated, &reselect))
        return NULL;
    SinkObject *self = (SinkObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    Py_INCREF(egress);
    self->egress = (EgressObject *)egress;
    Py_INCREF(nominated);
    self->nominated = nominated;
    Py_INCREF(reselect);
    self->reselect = reselect;
    self->fd = -1;
    return (PyObject *)self;
}

static void sink_clear_pair(SinkObject *self) {
    Py_CLEAR(self->pair);
    Py_CLEAR(self->pair_send);
    Py_CLEAR(self->pair_addr);
    self->fd = -1;
}

static int Sink_traverse(SinkObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->reselect);
    Py_VISIT(self->nominated);
    Py_VISIT(self->pair);
    Py_VISIT(self->pair_send);
    Py_VISIT(self->pair_addr);
    Py_VISIT((PyObject *)self->tx);
    return 0;
}

static int Sink_clear(SinkObject *self) {
    Py_CLEAR(self->reselect);
    Py_CLEAR(self->nominated);
    Py_CLEAR(self->tx);
    sink_clear_pair(self);
    return 0;
}

static void Sink_dealloc(SinkObject *self) {
    PyObject_GC_UnTrack(self);
    Sink_clear(self);
    Py_XDECREF((PyObject *)self->egress);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Sink_set_tx(SinkObject *self, PyObject *tx) {
    if (tx != Py_None && !PyObject_TypeCheck(tx, &SrtpType)) {
        PyErr_SetString(PyExc_TypeError, "set_tx takes an Srtp or None");
        return NULL;
    }
    Py_CLEAR(self->tx);
    if (tx != Py_None) {
        Py_INCREF(tx);
        self->tx = (SrtpObject *)tx;
    }
    Py_RETURN_NONE;
}

static PyObject *Sink_set_pair(SinkObject *self, PyObject *args) {
    PyObject *pair, *addr = Py_None, *send = Py_None;
    int fd = -1;
    if (!PyArg_ParseTuple(args, "O|OiO", &pair, &addr, &fd, &send)) return NULL;
    if (pair == Py_None) {
        sink_clear_pair(self);
        Py_RETURN_NONE;
    }
    struct sockaddr_storage parsed;
    socklen_t len = 0;
    if (fd >= 0 && udp_parse_addr(addr, &parsed, &len) < 0) return NULL;
    if (fd < 0 && !PyCallable_Check(send)) {
        PyErr_SetString(PyExc_TypeError, "a pair without a socket needs a send callable");
        return NULL;
    }
    sink_clear_pair(self);
    Py_INCREF(pair);
    self->pair = pair;
    Py_INCREF(addr);
    self->pair_addr = addr;
    Py_INCREF(send);
    self->pair_send = send;
    self->fd = fd;
    if (fd >= 0) {
        self->addr = parsed;
        self->addrlen = len;
    }
    Py_RETURN_NONE;
}

static PyObject *Sink_close(SinkObject *self, PyObject *unused) {
    (void)unused;
    self->closed = 1;
    Py_CLEAR(self->tx);
    sink_clear_pair(self);
    Py_RETURN_NONE;
}

/* 1: the pair is current and set; 0: no pair (dropped counted); -1: error. */
static int sink_pair(SinkObject *self) {
    PyObject *current = PyDict_GetItemWithError(self->nominated, ONE);
    if (current == NULL && PyErr_Occurred()) return -1;
    if (current != self->pair || current == NULL) {
        if (current != NULL || self->pair != NULL) {
            PyObject *r = PyObject_CallNoArgs(self->reselect);
            if (r == NULL) return -1;
            Py_DECREF(r);
        }
        if (self->pair == NULL) return 0;
    }
    return 1;
}

/* Protect data (already in buf, len bytes) and queue or send it. Returns 1 sent/queued,
 * 0 not sent (counted), -1 error. `slot` is where buf lives when fd >= 0. */
static int sink_emit(SinkObject *self, slot_t *slot, char *buf, int len, int rtcp) {
    int status = (rtcp ? f_protect_rtcp : f_protect)(self->tx->ctx, buf, &len);
    if (status != 0) {
        self->protect_errors++;
        return 0;
    }
    if (slot != NULL) {
        slot->d.fd = self->fd;
        slot->d.iov.iov_base = slot->data;
        slot->d.iov.iov_len = (size_t)len;
        slot->d.addr = self->addr;
        slot->d.addrlen = self->addrlen;
        Py_INCREF(self);
        slot->sink = self;
        EgressObject *egress = self->egress;
        egress->count++;
        if (egress->flush_soon == Py_None) egress_flush(egress);
    } else {
        PyObject *data = PyBytes_FromStringAndSize(buf, len);
        if (data == NULL) return -1;
        PyObject *r = PyObject_CallFunctionObjArgs(self->pair_send, data, self->pair_addr, NULL);
        Py_DECREF(data);
        if (r == NULL) return -1;
        Py_DECREF(r);
    }
    self->packets_sent++;
    self->bytes_sent += (unsigned long long)len;
    return 1;
}

/* Common start of send() and forward(): where the copy goes. NULL: not sent (counted) or
 * error (exception set, *err = 1). */
static char *sink_buffer(SinkObject *self, Py_ssize_t n, int trailer, slot_t **slot,
                         char *local, int *err) {
    *err = 0;
    if (self->closed || self->tx == NULL) {
        self->dropped++;
        return NULL;
    }
    int ok = sink_pair(self);
    if (ok < 0) {
        *err = 1;
        return NULL;
    }
    if (ok == 0 || self->tx == NULL) {
        self->dropped++;
        return NULL;
    }
    if (n > SLOT - trailer || n < 4) {
        self->protect_errors++;
        return NULL;
    }
    if (self->fd < 0) {
        *slot = NULL;
        return local;
    }
    *slot = egress_slot(self->egress);
    if (*slot == NULL) {
        *err = 1;
        return NULL;
    }
    return (*slot)->data;
}

static PyObject *Sink_send(SinkObject *self, PyObject *arg) {
    char *data;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(arg, &data, &n) < 0) return NULL;
    int rtcp = is_rtcp((const unsigned char *)data, n);
    char local[SLOT];
    slot_t *slot = NULL;
    int err;
    char *buf = sink_buffer(self, n, rtcp ? SRTCP_TRAILER : SRTP_TRAILER, &slot, local, &err);
    if (buf == NULL) {
        if (err) return NULL;
        Py_RETURN_FALSE;
    }
    memcpy(buf, data, (size_t)n);
    int r = sink_emit(self, slot, buf, (int)n, rtcp);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}

static void rewrite(char *buf, Py_ssize_t n, long seq, long twcc_pos, long twcc) {
    buf[2] = (char)((seq >> 8) & 0xFF);
    buf[3] = (char)(seq & 0xFF);
    if (twcc_pos >= 0 && twcc_pos + 2 <= n) {
        buf[twcc_pos] = (char)((twcc >> 8) & 0xFF);
        buf[twcc_pos + 1] = (char)(twcc & 0xFF);
    }
}

static int parse_forward(PyObject *const *args, Py_ssize_t nargs, char **data, Py_ssize_t *n,
                         long *seq, long *twcc_pos, long *twcc) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "takes (packet, seq, twcc_pos, twcc)");
        return -1;
    }
    if (PyBytes_AsStringAndSize(args[0], data, n) < 0) return -1;
    *seq = PyLong_AsLong(args[1]);
    *twcc_pos = PyLong_AsLong(args[2]);
    *twcc = PyLong_AsLong(args[3]);
    if (PyErr_Occurred()) return -1;
    if (*n < 4) {
        PyErr_SetString(PyExc_ValueError, "not an RTP packet");
        return -1;
    }
    if (*twcc_pos >= 0 && *twcc_pos + 2 > *n) {
        PyErr_SetString(PyExc_ValueError, "twcc_pos past the packet");
        return -1;
    }
    return 0;
}

static PyObject *Sink_forward(SinkObject *self, PyObject *const *args, Py_ssize_t nargs) {
    char *data;
    Py_ssize_t n;
    long seq, twcc_pos, twcc;
    if (parse_forward(args, nargs, &data, &n, &seq, &twcc_pos, &twcc) < 0) return NULL;
    char local[SLOT];
    slot_t *slot = NULL;
    int err;
    char *buf = sink_buffer(self, n, SRTP_TRAILER, &slot, local, &err);
    if (buf == NULL) {
        if (err) return NULL;
        Py_RETURN_FALSE;
    }
    memcpy(buf, data, (size_t)n);
    rewrite(buf, n, seq, twcc_pos, twcc);
    int r = sink_emit(self, slot, buf, (int)n, 0);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}

static PyObject *with_sequence(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    char *data;
    Py_ssize_t n;
    long seq, twcc_pos, twcc;
    if (parse_forward(args, nargs, &data, &n, &seq, &twcc_pos, &twcc) < 0) return NULL;
    PyObject *out = PyBytes_FromStringAndSize(data, n);
    if (out == NULL) return NULL;
    rewrite(PyBytes_AS_STRING(out), n, seq, twcc_pos, twcc);
    return out;
}

static PyObject *Sink_counters(SinkObject *self, PyObject *unused) {
    (void)unused;
    return Py_BuildValue("{sKsKsKsK}", "packets_sent", self->packets_sent, "bytes_sent",
                         self->bytes_sent, "protect_errors", self->protect_errors, "dropped",
                         self->dropped);
}

static PyObject *Sink_closed_get(SinkObject *self, void *c) {
    (void)c;
    return PyBool_FromLong(self->closed);
}

static PyObject *Sink_fd_get(SinkObject *self, void *c) {
    (void)c;
    return PyLong_FromLong(self->pair == NULL ? -1 : self->fd);
}

static PyMethodDef Sink_methods[] = {
    {"send", (PyCFunction)Sink_send, METH_O,
     "send(packet) -> bool: protect plain RTP or RTCP and queue it"},
    {"forward", (PyCFunction)(void (*)(void))Sink_forward, METH_FASTCALL,
     "forward(packet, seq, twcc_pos, twcc) -> bool: a copy with the new sequence number "
     "(and transport-wide one at twcc_pos >= 0), protected and queued"},
    {"set_tx", (PyCFunction)Sink_set_tx, METH_O, "set_tx(srtp or None): the sending keys"},
    {"set_pair", (PyCFunction)Sink_set_pair, METH_VARARGS,
     "set_pair(pair, addr=None, fd=-1, send=None): the nominated pair, where to send; "
     "set_pair(None): none"},
    {"close", (PyCFunction)Sink_close, METH_NOARGS,
     "close(): nothing more goes out, queued datagrams are skipped"},
    {"counters", (PyCFunction)Sink_counters, METH_NOARGS,
     "counters() -> dict: packets_sent, bytes_sent, protect_errors, dropped"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Sink_getset[] = {
    {"closed", (getter)Sink_closed_get, NULL, "closed by close()", NULL},
    {"fileno", (getter)Sink_fd_get, NULL, "the socket of the current pair, -1: none", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SinkType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "native._egress.Sink",
    .tp_basicsize = sizeof(SinkObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One endpoint's way out: Sink(egress, nominated, reselect).",
    .tp_new = Sink_new,
    .tp_dealloc = (destructor)Sink_dealloc,
    .tp_traverse = (traverseproc)Sink_traverse,
    .tp_clear = (inquiry)Sink_clear,
    .tp_free = PyObject_GC_Del,
    .tp_methods = Sink_methods,
    .tp_getset = Sink_getset,
};

/* --- the module ------------------------------------------------------------------------ */

static PyObject *bind_libsrtp(PyObject *module, PyObject *args) {
    (void)module;
    unsigned long long p, pr, u, ur;
    if (!PyArg_ParseTuple(args, "KKKK", &p, &pr, &u, &ur)) return NULL;
    if (!p || !pr || !u || !ur) {
        PyErr_SetString(PyExc_ValueError, "a libsrtp function address is 0");
        return NULL;
    }
    f_protect = (srtp_fn)(uintptr_t)p;
    f_protect_rtcp = (srtp_fn)(uintptr_t)pr;
    f_unprotect = (srtp_fn)(uintptr_t)u;
    f_unprotect_rtcp = (srtp_fn)(uintptr_t)ur;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"bind_libsrtp", bind_libsrtp, METH_VARARGS,
     "bind_libsrtp(protect, protect_rtcp, unprotect, unprotect_rtcp): the addresses of "
     "libsrtp's functions (native/srtp.py, once)"},
    {"with_sequence", (PyCFunction)(void (*)(void))with_sequence, METH_FASTCALL,
     "with_sequence(packet, seq, twcc_pos, twcc) -> bytes: a copy with another sequence "
     "number and, if twcc_pos >= 0, transport-wide sequence number"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "native._egress",
    "SRTP and batched UDP sends for the bridge's browser endpoints.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__egress(void) {
    if (PyType_Ready(&SrtpType) < 0 || PyType_Ready(&EgressType) < 0 ||
        PyType_Ready(&SinkType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    ONE = PyLong_FromLong(1);
    SrtpError = PyErr_NewException("native._egress.SrtpError", PyExc_Exception, NULL);
    if (ONE == NULL || SrtpError == NULL) return NULL;
    Py_INCREF(SrtpError);
    if (PyModule_AddObject(m, "SrtpError", SrtpError) < 0) return NULL;
    Py_INCREF(&SrtpType);
    Py_INCREF(&EgressType);
    Py_INCREF(&SinkType);
    if (PyModule_AddObject(m, "Srtp", (PyObject *)&SrtpType) < 0 ||
        PyModule_AddObject(m, "Egress", (PyObject *)&EgressType) < 0 ||
        PyModule_AddObject(m, "Sink", (PyObject *)&SinkType) < 0)
        return NULL;
    return m;
}

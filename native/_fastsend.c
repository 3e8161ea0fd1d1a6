/* native._fastsend: send a batch of UDP datagrams in one call from Python.
 *
 * send_batch(items) -> (sent, dropped, failed)
 *   items: a list of (fd, data, (host, port)) with host a numeric IPv4 or IPv6 address.
 *   Consecutive items on the same fd go out in one sendmmsg(2) call; the sockets must be
 *   non-blocking (MSG_DONTWAIT is set anyway): a datagram the kernel will not take now
 *   (EAGAIN, ENOBUFS) is dropped and counted, never waited for. Other errors
 *   (e.g. ECONNREFUSED from an earlier ICMP, EBADF) count as failed. The addresses are
 *   parsed with the GIL held; the system calls run with the GIL released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "udp_send.h"

static PyObject *send_batch(PyObject *self, PyObject *arg) {
    (void)self;
    PyObject *seq = PySequence_Fast(arg, "send_batch takes a list of (fd, data, addr)");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    udp_dgram_t *items = NULL;
    udp_dgram_t **order = NULL;
    PyObject **keep = NULL;
    Py_ssize_t kept = 0;
    unsigned long long sent = 0, dropped = 0, failed = 0;
    if (n == 0) {
        Py_DECREF(seq);
        return Py_BuildValue("(KKK)", sent, dropped, failed);
    }
    items = PyMem_Calloc((size_t)n, sizeof(udp_dgram_t));
    order = PyMem_Calloc((size_t)n, sizeof(udp_dgram_t *));
    keep = PyMem_Calloc((size_t)n, sizeof(PyObject *));
    if (items == NULL || order == NULL || keep == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    PyObject **elems = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = elems[i];
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 3) {
            PyErr_SetString(PyExc_TypeError, "each item must be (fd, data, addr)");
            goto error;
        }
        long fd = PyLong_AsLong(PyTuple_GET_ITEM(t, 0));
        if (fd == -1 && PyErr_Occurred()) goto error;
        if (fd < 0 || fd > 0x7fffffff) {
            PyErr_SetString(PyExc_ValueError, "bad file descriptor");
            goto error;
        }
        PyObject *data = PyTuple_GET_ITEM(t, 1);
        if (!PyBytes_Check(data)) {
            PyErr_SetString(PyExc_TypeError, "data must be bytes");
            goto error;
        }
        Py_INCREF(data);
        keep[kept++] = data;
        order[i] = &items[i];
        items[i].fd = (int)fd;
        items[i].iov.iov_base = PyBytes_AS_STRING(data);
        items[i].iov.iov_len = (size_t)PyBytes_GET_SIZE(data);
        if (udp_parse_addr(PyTuple_GET_ITEM(t, 2), &items[i].addr, &items[i].addrlen) < 0)
            goto error;
    }
    Py_BEGIN_ALLOW_THREADS
    udp_send(order, n, &sent, &dropped, &failed);
    Py_END_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < kept; i++) Py_DECREF(keep[i]);
    PyMem_Free(keep);
    PyMem_Free(order);
    PyMem_Free(items);
    Py_DECREF(seq);
    return Py_BuildValue("(KKK)", sent, dropped, failed);

error:
    for (Py_ssize_t i = 0; i < kept; i++) Py_DECREF(keep[i]);
    PyMem_Free(keep);
    PyMem_Free(order);
    PyMem_Free(items);
    Py_DECREF(seq);
    return NULL;
}

static PyMethodDef methods[] = {
    {"send_batch", send_batch, METH_O,
     "send_batch(items) -> (sent, dropped, failed): items are (fd, data, (host, port)); "
     "consecutive items on one fd go out in one sendmmsg call; never blocks."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "native._fastsend",
    "Batched non-blocking UDP sends (sendmmsg) for the media paths.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastsend(void) { return PyModule_Create(&module); }

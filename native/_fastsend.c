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

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define CHUNK 64 /* datagrams per sendmmsg call at most */

typedef struct {
    int fd;
    struct iovec iov;
    struct sockaddr_storage addr;
    socklen_t addrlen;
} item_t;

static int parse_addr(PyObject *addr, struct sockaddr_storage *out, socklen_t *len) {
    PyObject *host_obj;
    long port;
    if (!PyTuple_Check(addr) || PyTuple_GET_SIZE(addr) < 2) {
        PyErr_SetString(PyExc_TypeError, "address must be a (host, port, ...) tuple");
        return -1;
    }
    host_obj = PyTuple_GET_ITEM(addr, 0);
    port = PyLong_AsLong(PyTuple_GET_ITEM(addr, 1));
    if (port == -1 && PyErr_Occurred()) return -1;
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_OverflowError, "port must be 0-65535");
        return -1;
    }
    const char *host = PyUnicode_AsUTF8(host_obj);
    if (host == NULL) return -1;
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof(*v4);
        return 0;
    }
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        if (PyTuple_GET_SIZE(addr) >= 4) {
            long scope = PyLong_AsLong(PyTuple_GET_ITEM(addr, 3));
            if (scope == -1 && PyErr_Occurred()) return -1;
            v6->sin6_scope_id = (uint32_t)scope;
        }
        *len = sizeof(*v6);
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "not a numeric IP address: %s", host);
    return -1;
}

/* Send items[0..n) that share one fd; add to the counters. */
static void send_run(item_t *items, Py_ssize_t n, Py_ssize_t *sent, Py_ssize_t *dropped,
                     Py_ssize_t *failed) {
    struct mmsghdr msgs[CHUNK];
    Py_ssize_t i = 0;
    while (i < n) {
        int count = (int)((n - i) < CHUNK ? (n - i) : CHUNK);
        for (int k = 0; k < count; k++) {
            memset(&msgs[k], 0, sizeof(msgs[k]));
            msgs[k].msg_hdr.msg_name = &items[i + k].addr;
            msgs[k].msg_hdr.msg_namelen = items[i + k].addrlen;
            msgs[k].msg_hdr.msg_iov = &items[i + k].iov;
            msgs[k].msg_hdr.msg_iovlen = 1;
        }
        int done;
        do {
            done = sendmmsg(items[i].fd, msgs, (unsigned int)count, MSG_DONTWAIT);
        } while (done < 0 && errno == EINTR);
        if (done < 0) {
            /* The first datagram failed: the kernel takes none now (EAGAIN/ENOBUFS: drop the
             * rest of this socket's run) or this one is refused (skip it, go on). */
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
                *dropped += n - i;
                return;
            }
            *failed += 1;
            i += 1;
            continue;
        }
        *sent += done;
        i += done;
    }
}

static PyObject *send_batch(PyObject *self, PyObject *arg) {
    (void)self;
    PyObject *seq = PySequence_Fast(arg, "send_batch takes a list of (fd, data, addr)");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    item_t *items = NULL;
    PyObject **keep = NULL;
    Py_ssize_t kept = 0, sent = 0, dropped = 0, failed = 0;
    if (n == 0) {
        Py_DECREF(seq);
        return Py_BuildValue("(nnn)", sent, dropped, failed);
    }
    items = PyMem_Calloc((size_t)n, sizeof(item_t));
    keep = PyMem_Calloc((size_t)n, sizeof(PyObject *));
    if (items == NULL || keep == NULL) {
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
        items[i].fd = (int)fd;
        items[i].iov.iov_base = PyBytes_AS_STRING(data);
        items[i].iov.iov_len = (size_t)PyBytes_GET_SIZE(data);
        if (parse_addr(PyTuple_GET_ITEM(t, 2), &items[i].addr, &items[i].addrlen) < 0)
            goto error;
    }
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 1; i <= n; i++) {
        if (i == n || items[i].fd != items[start].fd) {
            send_run(items + start, i - start, &sent, &dropped, &failed);
            start = i;
        }
    }
    Py_END_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < kept; i++) Py_DECREF(keep[i]);
    PyMem_Free(keep);
    PyMem_Free(items);
    Py_DECREF(seq);
    return Py_BuildValue("(nnn)", sent, dropped, failed);

error:
    for (Py_ssize_t i = 0; i < kept; i++) Py_DECREF(keep[i]);
    PyMem_Free(keep);
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

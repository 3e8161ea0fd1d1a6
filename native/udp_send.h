/* native/udp_send.h: what native/_fastsend.c and native/_egress.c share: a numeric address
 * from Python into a sockaddr, and a batch of datagrams out with sendmmsg(2).
 *
 * udp_send(d, n, &sent, &dropped, &failed): d[0..n) are pointers to datagrams (fd, one
 * buffer, address); consecutive ones on the same fd go out in one sendmmsg call (UDP_CHUNK
 * at most a call). Never blocks (MSG_DONTWAIT): a datagram the kernel will not take now
 * (EAGAIN, ENOBUFS) is dropped with the rest of its socket's run and counted; another error
 * (e.g. ECONNREFUSED from an earlier ICMP, EBADF) skips that one datagram, counted as
 * failed. It touches no Python object: call it with the GIL released.
 */
#ifndef SWITCHBOARD_UDP_SEND_H
#define SWITCHBOARD_UDP_SEND_H

#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define UDP_CHUNK 64 /* datagrams per sendmmsg call at most */

typedef struct {
    int fd;
    struct iovec iov;
    struct sockaddr_storage addr;
    socklen_t addrlen;
} udp_dgram_t;

static int udp_parse_addr(PyObject *addr, struct sockaddr_storage *out, socklen_t *len) {
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

/* Send d[0..n), one fd's run at a time; add to the counters. */
static void udp_send(udp_dgram_t *const *d, Py_ssize_t n, unsigned long long *sent,
                     unsigned long long *dropped, unsigned long long *failed) {
    struct mmsghdr msgs[UDP_CHUNK];
    Py_ssize_t start = 0;
    while (start < n) {
        Py_ssize_t end = start + 1;
        while (end < n && d[end]->fd == d[start]->fd) end++;
        Py_ssize_t i = start;
        while (i < end) {
            int count = (int)((end - i) < UDP_CHUNK ? (end - i) : UDP_CHUNK);
            for (int k = 0; k < count; k++) {
                memset(&msgs[k], 0, sizeof(msgs[k]));
                msgs[k].msg_hdr.msg_name = &d[i + k]->addr;
                msgs[k].msg_hdr.msg_namelen = d[i + k]->addrlen;
                msgs[k].msg_hdr.msg_iov = &d[i + k]->iov;
                msgs[k].msg_hdr.msg_iovlen = 1;
            }
            int done;
            do {
                done = sendmmsg(d[i]->fd, msgs, (unsigned int)count, MSG_DONTWAIT);
            } while (done < 0 && errno == EINTR);
            if (done < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
                    *dropped += (unsigned long long)(end - i);  /* the socket takes none now */
                    break;
                }
                *failed += 1;  /* this one refused: go on with the next */
                i += 1;
                continue;
            }
            *sent += (unsigned long long)done;
            i += done;
        }
        start = end;
    }
}

#endif

/* native/buffers.h: what native/_mixcore.c and native/_plc.c share: taking a C-contiguous
 * buffer of samples of one type from Python, checked before any byte is read.
 *
 * get_samples(obj, &view, writable, itemsize, code, exc, what, kind): the buffer of obj
 * (writable when asked), its items `itemsize` bytes of struct code `code` ("h": int16, "f":
 * float32; a native-order prefix is accepted). Anything else raises `exc` ("<what> must be a
 * <kind> buffer") and returns -1 with nothing held; on 0 the caller releases the view.
 */
#ifndef SWITCHBOARD_BUFFERS_H
#define SWITCHBOARD_BUFFERS_H

#include <Python.h>

#include <string.h>

static int get_samples(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t itemsize,
                       const char *code, PyObject *exc, const char *what, const char *kind) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    const char *fmt = view->format;
    if (fmt != NULL && (fmt[0] == '<' || fmt[0] == '=' || fmt[0] == '@')) fmt++;
    if (view->itemsize != itemsize || fmt == NULL || strcmp(fmt, code) != 0) {
        PyErr_Format(exc, "%s must be a %s buffer", what, kind);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

#endif

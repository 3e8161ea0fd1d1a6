/* native._mixcore: the phone mixer's arithmetic on one room's frames, and table lookups for
 * G.711, in C: on frames of 160 or 320 samples numpy spends more time entering and leaving
 * each call than computing (see docs/benchmarks.md, "Mixing in C").
 *
 * mix(voices, tones, threshold, out, n) -> list[int]
 *   voices: a sequence of C-contiguous int16 buffers of n samples each (the room's voices);
 *   tones: a sequence of int16 buffers of n samples added to the total (join and leave
 *   tones: nobody's voice); out: a writable C-contiguous int16 buffer of at least
 *   (len(voices) + 1) * n samples. A voice whose peak |sample| is at or under threshold is
 *   silent: left out of the total. Row i of out (i < len(voices)) becomes the total less
 *   voice i (the N-1 mix: a silent voice's row is the whole mix), row len(voices) the whole
 *   mix, each clipped to int16. Returns the indices of the silent voices.
 *
 * peak(pcm) -> int
 *   the largest |sample| of an int16 buffer (0 for an empty one): 32768 for -32768.
 *
 * lut_encode(table, pcm) -> bytes
 *   table: 65536 bytes, indexed by each int16 sample's bit pattern as uint16; one byte out
 *   per sample (G.711 encoding with gateway/media/g711.py's tables).
 * lut_decode(table, payload) -> bytes
 *   table: 256 int16 samples (native byte order), indexed by each byte of payload; two bytes
 *   out per byte in (G.711 decoding), for numpy.frombuffer(..., int16).
 *
 * The tables stay in gateway/media/g711.py (one definition of G.711's arithmetic); these
 * functions only look them up. Buffers are checked (item size, length, contiguity):
 * a wrong one raises ValueError or TypeError, never reads or writes out of bounds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "buffers.h"

#include <stdint.h>
#include <string.h>

#define MAX_SAMPLES 1920 /* 40 ms at 48 kHz: far above any frame the mixer makes */
#define STACK_VOICES 32

static int get_int16(PyObject *obj, Py_buffer *view, int writable, const char *what) {
    return get_samples(obj, view, writable, 2, "h", PyExc_TypeError, what, "int16");
}

static inline int16_t clip16(int32_t v) {
    return (int16_t)(v > 32767 ? 32767 : (v < -32768 ? -32768 : v));
}

static PyObject *mix(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *voices_obj, *tones_obj, *out_obj;
    int threshold;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "OOiOn", &voices_obj, &tones_obj, &threshold, &out_obj, &n))
        return NULL;
    if (n <= 0 || n > MAX_SAMPLES) {
        PyErr_Format(PyExc_ValueError, "n must be 1-%d samples", MAX_SAMPLES);
        return NULL;
    }
    PyObject *voices = PySequence_Fast(voices_obj, "voices must be a sequence");
    if (voices == NULL) return NULL;
    PyObject *tones = PySequence_Fast(tones_obj, "tones must be a sequence");
    if (tones == NULL) {
        Py_DECREF(voices);
        return NULL;
    }
    Py_ssize_t nv = PySequence_Fast_GET_SIZE(voices), nt = PySequence_Fast_GET_SIZE(tones);
    Py_buffer stack_views[STACK_VOICES];
    char stack_quiet[STACK_VOICES];
    Py_buffer *views = stack_views;
    char *quiet = stack_quiet;
    Py_ssize_t got = 0;
    Py_buffer out;
    int have_out = 0;
    PyObject *result = NULL;
    if (nv > STACK_VOICES) {
        views = PyMem_Calloc((size_t)nv, sizeof(Py_buffer));
        quiet = PyMem_Calloc((size_t)nv, 1);
        if (views == NULL || quiet == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    for (; got < nv; got++) {
        if (get_int16(PySequence_Fast_GET_ITEM(voices, got), &views[got], 0, "a voice") < 0)
            goto done;
        if (views[got].len != n * 2) {
            got++;
            PyErr_SetString(PyExc_ValueError, "a voice is not n samples long");
            goto done;
        }
    }
    if (get_int16(out_obj, &out, 1, "out") < 0) goto done;
    have_out = 1;
    if (out.len < (nv + 1) * n * 2) {
        PyErr_SetString(PyExc_ValueError, "out is shorter than (len(voices) + 1) * n samples");
        goto done;
    }
    int32_t total[MAX_SAMPLES];
    memset(total, 0, (size_t)n * sizeof(int32_t));
    for (Py_ssize_t v = 0; v < nv; v++) {
        const int16_t *s = views[v].buf;
        int32_t peak = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            int32_t a = s[i] < 0 ? -(int32_t)s[i] : s[i];
            if (a > peak) peak = a;
        }
        quiet[v] = peak <= threshold;
        if (!quiet[v])
            for (Py_ssize_t i = 0; i < n; i++) total[i] += s[i];
    }
    for (Py_ssize_t t = 0; t < nt; t++) {
        Py_buffer tone;
        if (get_int16(PySequence_Fast_GET_ITEM(tones, t), &tone, 0, "a tone") < 0) goto done;
        if (tone.len != n * 2) {
            PyBuffer_Release(&tone);
            PyErr_SetString(PyExc_ValueError, "a tone is not n samples long");
            goto done;
        }
        const int16_t *s = tone.buf;
        for (Py_ssize_t i = 0; i < n; i++) total[i] += s[i];
        PyBuffer_Release(&tone);
    }
    int16_t *rows = out.buf;
    int16_t *full = rows + nv * n;
    for (Py_ssize_t i = 0; i < n; i++) full[i] = clip16(total[i]);
    for (Py_ssize_t v = 0; v < nv; v++) {
        int16_t *row = rows + v * n;
        if (quiet[v]) {
            memcpy(row, full, (size_t)n * 2);
        } else {
            const int16_t *s = views[v].buf;
            for (Py_ssize_t i = 0; i < n; i++) row[i] = clip16(total[i] - s[i]);
        }
    }
    result = PyList_New(0);
    if (result == NULL) goto done;
    for (Py_ssize_t v = 0; v < nv; v++) {
        if (!quiet[v]) continue;
        PyObject *index = PyLong_FromSsize_t(v);
        if (index == NULL || PyList_Append(result, index) < 0) {
            Py_XDECREF(index);
            Py_CLEAR(result);
            goto done;
        }
        Py_DECREF(index);
    }
done:
    for (Py_ssize_t v = 0; v < got; v++) PyBuffer_Release(&views[v]);
    if (have_out) PyBuffer_Release(&out);
    if (views != stack_views) PyMem_Free(views);
    if (quiet != stack_quiet) PyMem_Free(quiet);
    Py_DECREF(voices);
    Py_DECREF(tones);
    return result;
}

static PyObject *peak(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer pcm;
    if (get_int16(arg, &pcm, 0, "pcm") < 0) return NULL;
    const int16_t *s = pcm.buf;
    int32_t top = 0;
    for (Py_ssize_t i = 0; i < pcm.len / 2; i++) {
        int32_t a = s[i] < 0 ? -(int32_t)s[i] : s[i];
        if (a > top) top = a;
    }
    PyBuffer_Release(&pcm);
    return PyLong_FromLong(top);
}

static PyObject *lut_encode(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer table, pcm;
    PyObject *pcm_obj;
    if (!PyArg_ParseTuple(args, "y*O", &table, &pcm_obj)) return NULL;
    if (table.len != 65536) {
        PyBuffer_Release(&table);
        PyErr_SetString(PyExc_ValueError, "the encode table must be 65536 bytes");
        return NULL;
    }
    if (get_int16(pcm_obj, &pcm, 0, "pcm") < 0) {
        PyBuffer_Release(&table);
        return NULL;
    }
    Py_ssize_t n = pcm.len / 2;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out != NULL) {
        const uint8_t *t = table.buf;
        const uint16_t *s = pcm.buf;
        uint8_t *d = (uint8_t *)PyBytes_AS_STRING(out);
        for (Py_ssize_t i = 0; i < n; i++) d[i] = t[s[i]];
    }
    PyBuffer_Release(&pcm);
    PyBuffer_Release(&table);
    return out;
}

static PyObject *lut_decode(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer table, payload;
    if (!PyArg_ParseTuple(args, "y*y*", &table, &payload)) return NULL;
    PyObject *out = NULL;
    if (table.len != 512) {
        PyErr_SetString(PyExc_ValueError, "the decode table must be 256 int16 samples");
    } else {
        out = PyBytes_FromStringAndSize(NULL, payload.len * 2);
        if (out != NULL) {
            const int16_t *t = table.buf;
            const uint8_t *s = payload.buf;
            int16_t *d = (int16_t *)PyBytes_AS_STRING(out);
            for (Py_ssize_t i = 0; i < payload.len; i++) d[i] = t[s[i]];
        }
    }
    PyBuffer_Release(&payload);
    PyBuffer_Release(&table);
    return out;
}

static PyMethodDef methods[] = {
    {"mix", mix, METH_VARARGS,
     "mix(voices, tones, threshold, out, n) -> indices of the silent voices"},
    {"peak", peak, METH_O, "peak(pcm_int16) -> the largest |sample|"},
    {"lut_encode", lut_encode, METH_VARARGS, "lut_encode(table65536, pcm_int16) -> bytes"},
    {"lut_decode", lut_decode, METH_VARARGS, "lut_decode(table256_int16, payload) -> bytes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "native._mixcore",
    "The phone mixer's arithmetic and G.711 table lookups in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__mixcore(void) { return PyModule_Create(&module); }

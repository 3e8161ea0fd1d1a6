/* native._plc: the arithmetic of packet loss concealment (gateway/media/plc.py) in C.
 *
 * A concealment starts with a pitch search over the recent history and a few dozen small array
 * operations to build the loop; done with numpy that was about 100 us per
 * lost frame (150 us for an interpolation), nearly all of it numpy entering and leaving
 * its calls. When a carrier or the network drops one packet on every call at once, every
 * phone leg of the process conceals in the same mix tick: 500 legs made a 60 ms tick, late
 * for every phone. Here it is about 5-10 us (docs/benchmarks.md, "Concealment in C").
 *
 * extend(hist, out, window, min_pitch, max_pitch, first_span, widen_span, max_periods,
 *        decay_floor) -> int
 *   hist: C-contiguous float32 samples, the signal to continue; out: a writable C-contiguous
 *   float32 buffer, filled with len(out) samples continuing hist pitch-periodically.
 *   Returns the pitch period used (samples).
 *
 *   The pitch: the lag in [min_pitch, max_pitch] whose window best predicts the last
 *   `window` samples of hist (normalized autocorrelation: corr^2 / energy over the lags with
 *   a positive correlation; of scores within a millionth of each other the shorter lag
 *   wins, as every multiple of a period scores the same; none positive: max_pitch). When hist
 *   is too short for a window of at least min_pitch samples against max_pitch, the pitch is
 *   min(len(hist), max_pitch).
 *
 *   The continuation: the last period looped, its end overlap-added (a quarter period, the
 *   "lap") with the samples before its start; after `first_span` samples the loop widens to
 *   two periods, then every `widen_span` samples by one more, up to max_periods (or as many
 *   as hist holds), each switch overlap-added over the lap. A signal whose last period is
 *   weaker than the one before keeps decaying at that rate per period (not below
 *   decay_floor per period). The start carries an offset from the last real sample that
 *   decays to zero over the lap, so the first synthetic sample continues the real one.
 *
 * Buffers are checked (float32, C-contiguous, writable for out); bad arguments raise
 * ValueError or TypeError, never read or write out of bounds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "buffers.h"

#include <math.h>
#include <string.h>

/* Scores within this fraction of each other are a tie, won by the shorter lag: on a
 * periodic signal every multiple of the period scores the same up to rounding. */
#define TIE 1e-6

static int get_float32(PyObject *obj, Py_buffer *view, int writable, const char *what) {
    return get_samples(obj, view, writable, 4, "f", PyExc_ValueError, what, "float32");
}

/* The pitch lag: see the module comment. */
static Py_ssize_t estimate_pitch(const float *hf, Py_ssize_t len, Py_ssize_t frame,
                                 Py_ssize_t min_p, Py_ssize_t max_p, double *h) {
    Py_ssize_t window = len - max_p < frame ? len - max_p : frame;
    if (window < min_p) return len < max_p ? len : max_p;
    /* the searched part of the history in double once (h: len - min_p samples) */
    Py_ssize_t first = len - window - max_p;
    for (Py_ssize_t i = first; i < len; i++) h[i - first] = hf[i];
    const double *ref = h + (len - window - first);
    /* energy of the candidate window for lag = min_p, then slid one sample back per lag */
    const double *cand = h + (len - window - min_p - first);
    double energy = 0.0;
    for (Py_ssize_t i = 0; i < window; i++) energy += cand[i] * cand[i];
    double best = 0.0;
    Py_ssize_t best_lag = -1;
    for (Py_ssize_t lag = min_p; lag <= max_p; lag++) {
        cand = h + (len - window - lag - first);
        if (lag > min_p) {  /* the window moved one sample back */
            energy += cand[0] * cand[0] - cand[window] * cand[window];
            if (energy < 0.0) energy = 0.0;
        }
        /* four sums side by side: the adds do not wait on each other */
        double c0 = 0.0, c1 = 0.0, c2 = 0.0, c3 = 0.0;
        Py_ssize_t i = 0;
        for (; i + 4 <= window; i += 4) {
            c0 += cand[i] * ref[i];
            c1 += cand[i + 1] * ref[i + 1];
            c2 += cand[i + 2] * ref[i + 2];
            c3 += cand[i + 3] * ref[i + 3];
        }
        for (; i < window; i++) c0 += cand[i] * ref[i];
        double corr = (c0 + c1) + (c2 + c3);
        if (corr > 0.0) {
            double score = corr * corr / (energy + 1e-3);
            if (score > best * (1.0 + TIE)) {
                best = score;
                best_lag = lag;
            }
        }
    }
    if (best_lag < 0) return max_p;
    return best_lag;
}

/* The last `length` samples of h, their end overlap-added with the `lap` samples before. */
static void make_loop(const float *h, Py_ssize_t end, Py_ssize_t length, Py_ssize_t lap,
                      const float *ramp, float *loop) {
    memcpy(loop, h + end - length, (size_t)length * sizeof(float));
    const float *before = h + end - length - lap;
    for (Py_ssize_t k = 0; k < lap; k++) {
        Py_ssize_t i = length - lap + k;
        loop[i] = loop[i] * (1.0f - ramp[k]) + before[k] * ramp[k];
    }
}

static PyObject *extend(PyObject *self, PyObject *args) {
    PyObject *hist_obj, *out_obj;
    Py_ssize_t frame, min_p, max_p, first_span, widen_span, max_periods;
    double decay_floor;
    if (!PyArg_ParseTuple(args, "OOnnnnnnd", &hist_obj, &out_obj, &frame, &min_p, &max_p,
                          &first_span, &widen_span, &max_periods, &decay_floor))
        return NULL;
    if (min_p < 1 || max_p < min_p || frame < 1 || first_span < 1 || widen_span < 1 ||
        max_periods < 1) {
        PyErr_SetString(PyExc_ValueError, "extend: bad window, pitch range or spans");
        return NULL;
    }
    Py_buffer hv, ov;
    if (get_float32(hist_obj, &hv, 0, "hist") < 0) return NULL;
    if (get_float32(out_obj, &ov, 1, "out") < 0) {
        PyBuffer_Release(&hv);
        return NULL;
    }
    const float *h = (const float *)hv.buf;
    float *out = (float *)ov.buf;
    Py_ssize_t end = hv.len / 4, count = ov.len / 4;
    PyObject *result = NULL;
    float *scratch = NULL;
    if (end < 1) {
        PyErr_SetString(PyExc_ValueError, "extend: empty history");
        goto done;
    }
    if (count == 0) {
        result = PyLong_FromLong(0);
        goto done;
    }

    double *work = PyMem_Malloc((size_t)end * sizeof(double));
    if (work == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t pitch = estimate_pitch(h, end, frame, min_p, max_p, work);
    PyMem_Free(work);
    Py_ssize_t lap = pitch / 4 < end - pitch ? pitch / 4 : end - pitch;
    Py_ssize_t most = (end - lap) / pitch;
    if (most > max_periods) most = max_periods;
    if (most < 1) most = 1;  /* (end >= pitch, lap <= end - pitch: at least one) */
    /* ramp, fall, two loops (the current one and the next) and the blend */
    Py_ssize_t longest = most * pitch;
    scratch = PyMem_Malloc((size_t)(3 * lap + 2 * longest + 1) * sizeof(float));
    if (scratch == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    float *ramp = scratch, *fall = ramp + lap, *blend = fall + lap;
    float *loop = blend + lap, *next = loop + longest;
    for (Py_ssize_t k = 0; k < lap; k++) {
        ramp[k] = (float)(k + 1) / (float)(lap + 1);
        fall[k] = 1.0f - ramp[k];
    }

    Py_ssize_t length = pitch;
    make_loop(h, end, length, lap, ramp, loop);
    float step = h[end - 1] - loop[length - 1];  /* where the real signal ended */
    Py_ssize_t periods = 1, phase = 0, t = 0;
    int blending = 0;
    for (;;) {
        Py_ssize_t span = periods >= most ? count - t : (periods == 1 ? first_span : widen_span);
        if (span > count - t) span = count - t;
        for (Py_ssize_t j = 0; j < span; j++) out[t + j] = loop[(phase + j) % length];
        if (blending) {
            Py_ssize_t m = lap < span ? lap : span;
            for (Py_ssize_t j = 0; j < m; j++)
                out[t + j] = out[t + j] * ramp[j] + blend[j] * fall[j];
        }
        t += span;
        phase = (phase + span) % length;
        if (t >= count) break;
        /* one more period: the same point of the waveform, one period earlier */
        for (Py_ssize_t j = 0; j < lap; j++) blend[j] = loop[(phase + j) % length];
        blending = 1;
        periods++;
        length = pitch * periods;
        make_loop(h, end, length, lap, ramp, next);
        float *swap = loop;
        loop = next;
        next = swap;
        phase %= pitch;
    }

    if (end >= 2 * pitch) {
        double last = 0.0, before = 0.0;
        for (Py_ssize_t i = end - pitch; i < end; i++) last += (double)h[i] * h[i];
        for (Py_ssize_t i = end - 2 * pitch; i < end - pitch; i++) before += (double)h[i] * h[i];
        if (last < before) {  /* dying away: keep on at that rate */
            double r = sqrt(last / before);
            double per_sample = pow(r > decay_floor ? r : decay_floor, 1.0 / (double)pitch);
            double gain = 1.0;  /* rate ** (k / pitch) */
            for (Py_ssize_t k = 0; k < count; k++) {
                out[k] = (float)(out[k] * gain);
                gain *= per_sample;
            }
        }
    }
    /* start from the last real sample: an offset decaying over a quarter period */
    Py_ssize_t head = lap < count ? lap : count;
    for (Py_ssize_t k = 0; k < head; k++) out[k] += step * fall[k];
    result = PyLong_FromSsize_t(pitch);

done:
    PyMem_Free(scratch);
    PyBuffer_Release(&ov);
    PyBuffer_Release(&hv);
    return result;
}

static PyMethodDef methods[] = {
    {"extend", extend, METH_VARARGS,
     "extend(hist, out, window, min_pitch, max_pitch, first_span, widen_span, max_periods, "
     "decay_floor) -> pitch"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "native._plc",
    "Packet loss concealment's pitch search and loop in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__plc(void) { return PyModule_Create(&module); }

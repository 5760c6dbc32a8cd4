/* Native fast path of extract/parse.py's BlockParser: dump lines (one JSON object each) -> typed columns.
 * Also the other C kernels of the package (fastjson.py: newlines, token counts, 64-bit hashes, base-36
 * keys, crc32). One file, long because: setup.py builds the optional extension from a single source
 * without a compiler-specific build system, and the kernels share the string-buffer helpers.
 *
 * Contract (asserted by tests/test_fastjson.py against parse.parse_line): the parser may DECLINE any
 * line, and the caller then runs the Python reference (orjson + coercion), which also names the
 * quarantine reason. For every line it ACCEPTS, the values equal what parse_line returns. So this
 * file only has to be exact on the accept side; anything unusual is declined:
 *   - not strict RFC 8259 JSON (orjson's grammar), invalid UTF-8, lone surrogate escapes, control
 *     characters in strings, nesting deeper than MAX_DEPTH, numbers that could overflow a double;
 *   - a key with an escape (it might decode to a field name), a field that we read given twice;
 *   - a required field missing, null or not a string;
 *   - a typed value that needs more than the simple coercions below (strings other than plain
 *     digits / ""/"null"/"none", integers beyond int64, ...).
 * Accepted coercions (see parse.coerce_*):
 *   int    <- integer literal in int64, float (truncated), "digits", ""/"null"/"none" (-> null), null
 *   edited <- false/true/null (-> null), integer, float, "digits", "false"/"true"/""/"null"/"none" (-> null)
 *   bool   <- true/false, 0/1, "true"/"false"/"1"/"0", ""/"null"/"none" (-> null), null
 *   str    <- string, null
 *
 * Measured on generated 2016 comments (~400 B/line, 20 fields), one core: ~0.5 us/line, vs ~3.2 us for
 * Arrow's JSON reader plus ~2 us of the Python glue around it, and ~2-3 us for orjson.loads.
 * Strings are scanned 16 bytes at a time (SSE2) where available.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MAX_FIELDS 64
#define MAX_DEPTH 512         /* orjson allows 1024; deeper lines are declined, not rejected */
#define MAX_INT_DIGITS 200    /* integer part digits of a skipped number: keeps it finite as a double */
#define MAX_EXP_DIGITS 2      /* exponent digits: |e| <= 99 */

enum { K_STR = 's', K_INT = 'i', K_BOOL = 'b', K_EDITED = 'e' };

typedef struct {
    int n;
    const char *name[MAX_FIELDS];
    Py_ssize_t name_len[MAX_FIELDS];
    char kind[MAX_FIELDS];
    char required[MAX_FIELDS];
    /* outputs, indexed by accepted row */
    uint8_t *valid[MAX_FIELDS];
    int64_t *ints[MAX_FIELDS];   /* int / edited / bool fields */
    int32_t *offsets[MAX_FIELDS];/* str fields: n_lines + 1 */
    uint8_t *sdata[MAX_FIELDS];  /* str fields: capacity >= len(data) (unescaping never grows) */
    int64_t spos[MAX_FIELDS];
    int64_t scap[MAX_FIELDS];    /* str fields: bytes the data buffer holds (at most INT32_MAX: int32 offsets) */
    uint64_t len_mask;           /* bit L set when a field name has length L (< 64) */
} spec_t;

typedef struct {
    const uint8_t *p, *end;
} cur_t;

/* 1 for bytes that can be copied as they are inside a JSON string (printable ASCII but " and \) */
static uint8_t PLAIN[256];

static void init_tables(void) {
    for (int c = 0; c < 256; c++) PLAIN[c] = (c >= 0x20 && c < 0x80 && c != '"' && c != '\\');
}

static inline void skip_ws(cur_t *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n')) c->p++;
}

static inline int expect_lit(cur_t *c, const char *lit, int len) {
    if (c->end - c->p < len || memcmp(c->p, lit, len) != 0) return 0;
    c->p += len;
    return 1;
}

/* Length of the valid UTF-8 sequence at p (strict: no overlongs, no surrogates, <= U+10FFFF), 0 if invalid. */
static inline int utf8_len(const uint8_t *p, const uint8_t *end) {
    uint8_t b = p[0];
    Py_ssize_t left = end - p;
    if (b >= 0xC2 && b <= 0xDF) {
        return (left >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    }
    if (b >= 0xE0 && b <= 0xEF) {
        if (left < 3 || (p[2] & 0xC0) != 0x80) return 0;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
        return (p[1] >= lo && p[1] <= hi) ? 3 : 0;
    }
    if (b >= 0xF0 && b <= 0xF4) {
        if (left < 4 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
        return (p[1] >= lo && p[1] <= hi) ? 4 : 0;
    }
    return 0;
}

static inline int hex4(const uint8_t *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t h = p[i];
        v <<= 4;
        if (h >= '0' && h <= '9') v |= h - '0';
        else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
        else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
        else return 0;
    }
    *out = v;
    return 1;
}

/* A JSON string whose opening quote is at c->p. Decoded into *out (advanced) when out is not NULL.
 * Sets *escaped when the string held a backslash escape. Returns 0 to decline the line. */
static int parse_string(cur_t *c, uint8_t **out, int *escaped) {
    const uint8_t *p = c->p + 1, *end = c->end;
    uint8_t *o = out ? *out : NULL;
    for (;;) {
#ifdef __SSE2__
        /* 16 bytes at a time while they are plain: a signed compare < 0x20 catches both the control
         * characters and the bytes >= 0x80 (negative as int8), which go through the scalar code */
        const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)p);
            __m128i special = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                           _mm_cmplt_epi8(v, space));
            int mask = _mm_movemask_epi8(special);
            /* the store may run past the string: output never gets ahead of input, so it stays in bounds */
            if (o) _mm_storeu_si128((__m128i *)o, v);
            if (mask) {
                int k = __builtin_ctz(mask);
                p += k;
                if (o) o += k;
                break;
            }
            p += 16;
            if (o) o += 16;
        }
#endif
        const uint8_t *run = p;
        while (p < end && PLAIN[*p]) p++;
        if (o && p > run) {
            memcpy(o, run, p - run);
            o += p - run;
        }
        if (p >= end) return 0;
        uint8_t b = *p;
        if (b == '"') {
            c->p = p + 1;
            if (out) *out = o;
            return 1;
        }
        if (b == '\\') {
            if (escaped) *escaped = 1;
            if (end - p < 2) return 0;
            uint8_t e = p[1];
            uint8_t ch;
            switch (e) {
            case '"': ch = '"'; break;
            case '\\': ch = '\\'; break;
            case '/': ch = '/'; break;
            case 'b': ch = '\b'; break;
            case 'f': ch = '\f'; break;
            case 'n': ch = '\n'; break;
            case 'r': ch = '\r'; break;
            case 't': ch = '\t'; break;
            case 'u': {
                uint32_t cp, lo;
                if (end - p < 6 || !hex4(p + 2, &cp)) return 0;
                p += 6;
                if (cp >= 0xDC00 && cp <= 0xDFFF) return 0;  /* lone low surrogate */
                if (cp >= 0xD800 && cp <= 0xDBFF) {          /* must be followed by \uDC00-\uDFFF */
                    if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, &lo)) return 0;
                    if (lo < 0xDC00 || lo > 0xDFFF) return 0;
                    p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                if (o) {
                    if (cp < 0x80) {
                        *o++ = (uint8_t)cp;
                    } else if (cp < 0x800) {
                        *o++ = 0xC0 | (cp >> 6);
                        *o++ = 0x80 | (cp & 0x3F);
                    } else if (cp < 0x10000) {
                        *o++ = 0xE0 | (cp >> 12);
                        *o++ = 0x80 | ((cp >> 6) & 0x3F);
                        *o++ = 0x80 | (cp & 0x3F);
                    } else {
                        *o++ = 0xF0 | (cp >> 18);
                        *o++ = 0x80 | ((cp >> 12) & 0x3F);
                        *o++ = 0x80 | ((cp >> 6) & 0x3F);
                        *o++ = 0x80 | (cp & 0x3F);
                    }
                }
                continue;
            }
            default:
                return 0;
            }
            if (o) *o++ = ch;
            p += 2;
            continue;
        }
        if (b < 0x20) return 0;  /* raw control character */
        int n = utf8_len(p, end);
        if (!n) return 0;
        if (o) {
            memcpy(o, p, n);
            o += n;
        }
        p += n;
    }
}

/* A JSON number at c->p. Sets *is_int and, for integer literals of up to 18 digits, *value and *fits. */
static int parse_number(cur_t *c, int *is_int, int64_t *value, int *fits) {
    const uint8_t *p = c->p, *end = c->end;
    int neg = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end) return 0;
    const uint8_t *digits = p;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return 0;
    }
    Py_ssize_t nd = p - digits;
    if (nd > MAX_INT_DIGITS) return 0;
    *is_int = 1;
    if (p < end && *p == '.') {
        *is_int = 0;
        p++;
        const uint8_t *f = p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        if (p == f) return 0;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        *is_int = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        const uint8_t *e = p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        if (p == e || p - e > MAX_EXP_DIGITS) return 0;
    }
    *fits = 0;
    if (*is_int && nd <= 18) {  /* 18 digits always fit in int64 */
        int64_t v = 0;
        for (const uint8_t *d = digits; d < digits + nd; d++) v = v * 10 + (*d - '0');
        *value = neg ? -v : v;
        *fits = 1;
    }
    c->p = p;
    return 1;
}

static int skip_value(cur_t *c, int depth);

/* After a member or an element: 1 when a "," follows (more to come), 2 at `close`, 0 otherwise. */
static inline int next_member(cur_t *c, uint8_t close) {
    skip_ws(c);
    if (c->p >= c->end) return 0;
    if (*c->p == ',') {
        c->p++;
        skip_ws(c);
        return 1;
    }
    if (*c->p == close) {
        c->p++;
        return 2;
    }
    return 0;
}

static int skip_container(cur_t *c, int depth, uint8_t close) {
    if (depth > MAX_DEPTH) return 0;
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return 1;
    }
    for (;;) {
        if (close == '}') {
            if (c->p >= c->end || *c->p != '"' || !parse_string(c, NULL, NULL)) return 0;
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':') return 0;
            c->p++;
            skip_ws(c);
        }
        if (!skip_value(c, depth + 1)) return 0;
        int next = next_member(c, close);
        if (next != 1) return next == 2;
    }
}

static int skip_value(cur_t *c, int depth) {
    if (c->p >= c->end) return 0;
    int is_int, fits;
    int64_t v;
    switch (*c->p) {
    case '"': return parse_string(c, NULL, NULL);
    case '{': return skip_container(c, depth, '}');
    case '[': return skip_container(c, depth, ']');
    case 't': return expect_lit(c, "true", 4);
    case 'f': return expect_lit(c, "false", 5);
    case 'n': return expect_lit(c, "null", 4);
    default: return parse_number(c, &is_int, &v, &fits);
    }
}

static inline int ascii_lower_eq(const uint8_t *s, Py_ssize_t n, const char *lit) {
    if ((Py_ssize_t)strlen(lit) != n) return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t ch = s[i];
        if (ch >= 'A' && ch <= 'Z') ch += 32;
        if (ch != (uint8_t)lit[i]) return 0;
    }
    return 1;
}

/* The content of a string value given for a typed field, classified for the coercions:
 * returns 1 = null ("", "null", "none"), 2 = integer (*v), 3 = true, 4 = false, 0 = decline. */
enum { S_DECLINE = 0, S_NULL = 1, S_INT = 2, S_TRUE = 3, S_FALSE = 4 };

static int classify_string(cur_t *c, int64_t *v, Py_ssize_t *len) {
    const uint8_t *start = c->p + 1;
    int escaped = 0;
    if (!parse_string(c, NULL, &escaped) || escaped) return S_DECLINE;
    const uint8_t *s = start;
    Py_ssize_t n = (c->p - 1) - start;
    *len = n;
    if (n == 0 || ascii_lower_eq(s, n, "null") || ascii_lower_eq(s, n, "none")) return S_NULL;
    if (ascii_lower_eq(s, n, "true")) return S_TRUE;
    if (ascii_lower_eq(s, n, "false")) return S_FALSE;
    Py_ssize_t i = 0;
    int neg = 0;
    if (s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (n - i < 1 || n - i > 18) return S_DECLINE;
    int64_t x = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return S_DECLINE;
        x = x * 10 + (s[i] - '0');
    }
    *v = neg ? -x : x;
    return S_INT;
}

/* The value of field f for accepted row r. Returns 0 to decline the line. */
static int parse_field(cur_t *c, spec_t *sp, int f, Py_ssize_t r) {
    if (c->p >= c->end) return 0;
    uint8_t b = *c->p;
    char kind = sp->kind[f];
    if (b == 'n') {
        if (!expect_lit(c, "null", 4)) return 0;
        sp->valid[f][r] = 0;
        return 1;
    }
    if (kind == K_STR) {
        if (b != '"') return 0;
        uint8_t *o = sp->sdata[f] + sp->spos[f];
        uint8_t *o0 = o;
        if (!parse_string(c, &o, NULL)) return 0;
        sp->spos[f] += o - o0;
        sp->valid[f][r] = 1;
        return 1;
    }
    int64_t v = 0;
    int is_int, fits;
    if (b == '-' || (b >= '0' && b <= '9')) {
        const uint8_t *num = c->p;
        if (!parse_number(c, &is_int, &v, &fits)) return 0;
        if (!is_int) {
            /* a float (float edit times, 2023+ created_utc): int(v) truncates toward zero. Python's own
             * parser rounds correctly, as orjson does, and ignores the locale (strtod would read "1.5" as 1
             * under a comma-decimal LC_NUMERIC); the text is copied out because it needs a terminator. */
            char text[48];
            Py_ssize_t len = c->p - num;
            if (kind == K_BOOL || len >= (Py_ssize_t)sizeof(text)) return 0;
            memcpy(text, num, len);
            text[len] = 0;
            /* the parse loop runs without the GIL: take it for Python's float parser (rare: float times) */
            PyGILState_STATE gil = PyGILState_Ensure();
            double d = PyOS_string_to_double(text, NULL, NULL);
            int failed = d == -1.0 && PyErr_Occurred();
            if (failed) PyErr_Clear();
            PyGILState_Release(gil);
            if (failed) return 0;
            if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return 0;
            v = (int64_t)d;
        } else if (!fits) {
            return 0;
        }
        if (kind == K_BOOL && v != 0 && v != 1) return 0;
        sp->ints[f][r] = v;
        sp->valid[f][r] = 1;
        return 1;
    }
    if (b == 't' || b == 'f') {
        if (kind == K_INT) return 0;  /* a boolean is not a number (bad_type) */
        int t = (b == 't');
        if (!(t ? expect_lit(c, "true", 4) : expect_lit(c, "false", 5))) return 0;
        if (kind == K_EDITED) {
            sp->valid[f][r] = 0;  /* edited: false/true -> no edit time known */
        } else {
            sp->ints[f][r] = t;
            sp->valid[f][r] = 1;
        }
        return 1;
    }
    if (b == '"') {
        Py_ssize_t len = 0;
        int s = classify_string(c, &v, &len);
        switch (s) {
        case S_NULL:
            sp->valid[f][r] = 0;
            return 1;
        case S_INT:
            if (kind == K_BOOL && (len != 1 || v > 1)) return 0;  /* only "0" and "1" (coerce_bool) */
            sp->ints[f][r] = v;
            sp->valid[f][r] = 1;
            return 1;
        case S_TRUE:
        case S_FALSE:
            if (kind == K_INT) return 0;
            if (kind == K_EDITED) {
                sp->valid[f][r] = 0;
            } else {
                sp->ints[f][r] = (s == S_TRUE);
                sp->valid[f][r] = 1;
            }
            return 1;
        default:
            return 0;
        }
    }
    return 0;
}

static inline int find_field(const spec_t *sp, const uint8_t *key, Py_ssize_t len) {
    if (len < 64 && !(sp->len_mask & (1ULL << len))) return -1;  /* most unread keys stop here */
    for (int f = 0; f < sp->n; f++) {
        if (sp->name_len[f] == len && (uint8_t)sp->name[f][0] == key[0] && memcmp(sp->name[f], key, len) == 0) return f;
    }
    return -1;
}

/* One line -> accepted row r (returns 1) or declined (returns 0; the caller rolls back). */
static int parse_object(cur_t *c, spec_t *sp, Py_ssize_t r) {
    uint64_t seen = 0;
    skip_ws(c);
    if (c->p >= c->end || *c->p != '{') return 0;
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
    } else {
        for (;;) {
            if (c->p >= c->end || *c->p != '"') return 0;
            const uint8_t *key = c->p + 1;
            int escaped = 0;
            if (!parse_string(c, NULL, &escaped) || escaped) return 0;
            Py_ssize_t klen = (c->p - 1) - key;
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':') return 0;
            c->p++;
            skip_ws(c);
            int f = find_field(sp, key, klen);
            if (f >= 0) {
                if (seen & (1ULL << f)) return 0;  /* duplicate key: orjson keeps the last; decline */
                seen |= 1ULL << f;
                if (!parse_field(c, sp, f, r)) return 0;
            } else if (!skip_value(c, 1)) {
                return 0;
            }
            int next = next_member(c, '}');
            if (next == 2) break;
            if (next != 1) return 0;
        }
    }
    skip_ws(c);
    if (c->p != c->end) return 0;  /* trailing bytes */
    for (int f = 0; f < sp->n; f++) {
        if (!(seen & (1ULL << f))) {
            sp->valid[f][r] = 0;
        } else if (!sp->valid[f][r] && sp->required[f]) {
            return 0;
        }
        if (sp->required[f] && !(seen & (1ULL << f))) return 0;
    }
    return 1;
}

static int get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t min_bytes, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return 0;
    if (view->len < min_bytes) {
        PyErr_Format(PyExc_ValueError, "%s buffer too small: %zd < %zd bytes", what, view->len, min_bytes);
        PyBuffer_Release(view);
        return 0;
    }
    return 1;
}

/* parse_lines(data, starts, ends, names, kinds, required, outputs, rows) -> n_rows
 *   data: bytes-like; starts, ends: int64 buffers (n lines); names: tuple of bytes; kinds: bytes of
 *   's'/'i'/'b'/'e'; required: bytes of 0/1; outputs: per field a tuple of writable buffers, for 's'
 *   (offsets int32[n+1], data uint8[>= len(data)], valid uint8[n]), else (values int64[n], valid
 *   uint8[n]); rows: writable int64[n], receives the index of each accepted line. */
static PyObject *parse_lines(PyObject *self, PyObject *args) {
    Py_buffer data, starts, ends, rows;
    PyObject *names, *outputs;
    const char *kinds, *required;
    Py_ssize_t nkinds, nreq;
    if (!PyArg_ParseTuple(args, "y*y*y*O!y#y#O!w*", &data, &starts, &ends, &PyTuple_Type, &names, &kinds,
                          &nkinds, &required, &nreq, &PyTuple_Type, &outputs, &rows))
        return NULL;
    PyObject *result = NULL;
    spec_t sp;
    Py_buffer views[MAX_FIELDS * 3];
    int nviews = 0;
    Py_ssize_t n = starts.len / 8;
    Py_ssize_t nf = PyTuple_GET_SIZE(names);
    if (nf > MAX_FIELDS || nf != nkinds || nf != nreq || nf != PyTuple_GET_SIZE(outputs)) {
        PyErr_SetString(PyExc_ValueError, "names, kinds, required and outputs must have one entry per field");
        goto done;
    }
    if (ends.len != starts.len || rows.len < n * 8) {
        PyErr_SetString(PyExc_ValueError, "starts, ends and rows must hold one int64 per line");
        goto done;
    }
    if (data.len >= INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "data must be < 2 GiB (int32 string offsets)");
        goto done;
    }
    sp.n = (int)nf;
    sp.len_mask = 0;
    for (Py_ssize_t f = 0; f < nf; f++) {
        PyObject *name = PyTuple_GET_ITEM(names, f);
        PyObject *out = PyTuple_GET_ITEM(outputs, f);
        if (!PyBytes_Check(name) || !PyTuple_Check(out)) {
            PyErr_SetString(PyExc_TypeError, "names must be bytes and outputs tuples");
            goto done;
        }
        sp.name[f] = PyBytes_AS_STRING(name);
        sp.name_len[f] = PyBytes_GET_SIZE(name);
        sp.len_mask |= sp.name_len[f] < 64 ? 1ULL << sp.name_len[f] : 0;
        if (sp.name_len[f] == 0 || sp.name_len[f] >= 64) {
            PyErr_SetString(PyExc_ValueError, "field names must have 1 to 63 bytes");
            goto done;
        }
        sp.kind[f] = kinds[f];
        sp.required[f] = required[f] != 0;
        if (sp.kind[f] == K_STR) {
            if (PyTuple_GET_SIZE(out) != 3) {
                PyErr_SetString(PyExc_ValueError, "a str field needs (offsets, data, valid)");
                goto done;
            }
            if (!get_buffer(PyTuple_GET_ITEM(out, 0), &views[nviews], (n + 1) * 4, "offsets")) goto done;
            sp.offsets[f] = views[nviews++].buf;
            if (!get_buffer(PyTuple_GET_ITEM(out, 1), &views[nviews], data.len, "string data")) goto done;
            sp.scap[f] = views[nviews].len < INT32_MAX ? views[nviews].len : INT32_MAX;
            sp.sdata[f] = views[nviews++].buf;
            if (!get_buffer(PyTuple_GET_ITEM(out, 2), &views[nviews], n, "valid")) goto done;
            sp.valid[f] = views[nviews++].buf;
            sp.offsets[f][0] = 0;
            sp.spos[f] = 0;
        } else if (sp.kind[f] == K_INT || sp.kind[f] == K_BOOL || sp.kind[f] == K_EDITED) {
            if (PyTuple_GET_SIZE(out) != 2) {
                PyErr_SetString(PyExc_ValueError, "a typed field needs (values, valid)");
                goto done;
            }
            if (!get_buffer(PyTuple_GET_ITEM(out, 0), &views[nviews], n * 8, "values")) goto done;
            sp.ints[f] = views[nviews++].buf;
            if (!get_buffer(PyTuple_GET_ITEM(out, 1), &views[nviews], n, "valid")) goto done;
            sp.valid[f] = views[nviews++].buf;
        } else {
            PyErr_Format(PyExc_ValueError, "unknown field kind %c", sp.kind[f]);
            goto done;
        }
    }
    const int64_t *st = starts.buf, *en = ends.buf;
    int64_t *out_rows = rows.buf;
    const uint8_t *base = data.buf;
    Py_ssize_t r = 0, bad_line = -1;
    int bad = 0; /* 1: bounds outside the data, 2: string buffer too small */
    /* No Python object is touched below: the GIL is released, so that the thread decoding the dump
     * (decode.Prefetched) runs while this one parses. Errors are raised once the GIL is back. */
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && !bad; i++) {
        if (st[i] < 0 || en[i] < st[i] || en[i] > data.len) {
            bad = 1, bad_line = i;
            break;
        }
        for (int f = 0; f < sp.n; f++) {  /* a line's strings take at most its length (SSE stores included) */
            if (sp.kind[f] == K_STR && sp.spos[f] + (en[i] - st[i]) > sp.scap[f]) bad = 2, bad_line = i;
        }
        if (bad) break;
        cur_t c = {base + st[i], base + en[i]};
        for (int f = 0; f < sp.n; f++) {  /* typed fields default to 0 so that unused slots are defined */
            if (sp.kind[f] != K_STR) sp.ints[f][r] = 0;
        }
        if (parse_object(&c, &sp, r)) {
            for (int f = 0; f < sp.n; f++) {
                if (sp.kind[f] == K_STR) sp.offsets[f][r + 1] = (int32_t)sp.spos[f];
            }
            out_rows[r++] = i;
        } else {
            for (int f = 0; f < sp.n; f++) {  /* roll back the declined line's strings */
                if (sp.kind[f] == K_STR) sp.spos[f] = sp.offsets[f][r];
            }
        }
    }
    Py_END_ALLOW_THREADS
    if (bad == 1) {
        PyErr_Format(PyExc_ValueError, "line %zd: bounds [%lld, %lld) outside the data", bad_line,
                     (long long)st[bad_line], (long long)en[bad_line]);
        goto done;
    }
    if (bad == 2) {
        PyErr_Format(PyExc_ValueError, "line %zd: string data buffer too small (line ranges that share "
                     "bytes need the sum of their lengths)", bad_line);
        goto done;
    }
    result = PyLong_FromSsize_t(r);
done:
    for (int k = 0; k < nviews; k++) PyBuffer_Release(&views[k]);
    PyBuffer_Release(&data);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&ends);
    PyBuffer_Release(&rows);
    return result;
}

/* newlines(data) -> bytes holding the int64 offsets of every "\n" in data (memchr: ~4x numpy's
 * compare + flatnonzero on a 4 MiB block). */
static PyObject *newlines(PyObject *self, PyObject *args) {
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data)) return NULL;
    const char *base = data.buf, *end = base + data.len, *p;
    Py_ssize_t count = 0;
    Py_BEGIN_ALLOW_THREADS
    for (p = base; p < end && (p = memchr(p, '\n', end - p)) != NULL; p++) count++;
    Py_END_ALLOW_THREADS
    PyObject *out = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(int64_t));
    if (out) {
        int64_t *o = (int64_t *)PyBytes_AS_STRING(out);
        Py_BEGIN_ALLOW_THREADS
        for (p = base; p < end && (p = memchr(p, '\n', end - p)) != NULL; p++) *o++ = p - base;
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&data);
    return out;
}

/* Length of the str.isspace() character at p (Python's str.split() separators: 9-13, 28-32, U+0085,
 * U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000), 0 when it is not one. */
static inline int space_len(const uint8_t *p, const uint8_t *end) {
    uint8_t b = p[0];
    if (b < 0x80) return (b == ' ' || (b >= 9 && b <= 13) || (b >= 28 && b <= 31)) ? 1 : 0;
    Py_ssize_t left = end - p;
    if (b == 0xC2) return (left >= 2 && (p[1] == 0x85 || p[1] == 0xA0)) ? 2 : 0;
    if (left < 3) return 0;
    if (b == 0xE1) return (p[1] == 0x9A && p[2] == 0x80) ? 3 : 0;
    if (b == 0xE2) {
        if (p[1] == 0x80) return ((p[2] >= 0x80 && p[2] <= 0x8A) || p[2] == 0xA8 || p[2] == 0xA9 || p[2] == 0xAF) ? 3 : 0;
        return (p[1] == 0x81 && p[2] == 0x9F) ? 3 : 0;
    }
    if (b == 0xE3) return (p[1] == 0x80 && p[2] == 0x80) ? 3 : 0;
    return 0;
}

static int check_offsets(const int32_t *off, Py_ssize_t n, Py_ssize_t data_len, const char *who) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (off[i] < 0 || off[i + 1] < off[i] || off[i + 1] > data_len) {
            PyErr_Format(PyExc_ValueError, "%s: string %zd outside the data", who, i);
            return -1;
        }
    return 0;
}

/* The arguments (offsets int32[n+1], data, flag, out) of a kernel that writes one 8-byte value per
 * string: parsed, offsets checked against the data, room for n outputs. 0, or -1 with an exception set
 * (and nothing held). */
typedef struct {
    Py_buffer offsets, data, out;
    int flag;
    Py_ssize_t n;
} StringArgs;

static void release_string_args(StringArgs *a) {
    PyBuffer_Release(&a->offsets);
    PyBuffer_Release(&a->data);
    PyBuffer_Release(&a->out);
}

static int string_args(PyObject *args, StringArgs *a, const char *who) {
    if (!PyArg_ParseTuple(args, "y*y*pw*", &a->offsets, &a->data, &a->flag, &a->out)) return -1;
    a->n = a->offsets.len / 4 - 1;
    if (a->n < 0 || a->out.len < a->n * 8) {
        PyErr_Format(PyExc_ValueError, "%s: need n + 1 offsets and n 8-byte outputs", who);
    } else if (check_offsets(a->offsets.buf, a->n, a->data.len, who) == 0) {
        return 0;
    }
    release_string_args(a);
    return -1;
}

/* token_counts(offsets, data, skip_backslash, out): len(s.split()) of each string of an Arrow string
 * array (int32 offsets, n + 1 of them; valid UTF-8), into int64 out[n]. With skip_backslash, that of
 * s.replace("\\", "").split(): a backslash neither starts, ends nor splits a token. */
static PyObject *token_counts(PyObject *self, PyObject *args) {
    StringArgs a;
    if (string_args(args, &a, "token_counts") < 0) return NULL;
    const int32_t *off = a.offsets.buf;
    const uint8_t *base = a.data.buf;
    int64_t *counts = a.out.buf;
    int skip_backslash = a.flag;
    for (Py_ssize_t i = 0; i < a.n; i++) {
        const uint8_t *p = base + off[i], *end = base + off[i + 1];
        int64_t count = 0;
        int in_token = 0;
        while (p < end) {
            uint8_t b = *p;
            if (b == '\\' && skip_backslash) {
                p++;
                continue;
            }
            int k = space_len(p, end);
            if (k) {
                in_token = 0;
                p += k;
                continue;
            }
            if (!in_token) {
                count++;
                in_token = 1;
            }
            p++;  /* continuation bytes of a character are never spaces or backslashes */
        }
        counts[i] = count;
    }
    release_string_args(&a);
    Py_RETURN_NONE;
}

/* 64-bit string hashes for the filter's corpus rules (bland trigrams, duplicate pairs). Definition
 * (fastjson.py has a numpy twin that gives the same bits; tests compare them):
 *   hash64(s) = fmix64(sum_k fmix64(w_k + k * H_POS + H_SEED) + len * H_LEN + H_SEED)   (mod 2^64)
 * where w_k is the little-endian word of bytes s[8k:8k+8], zero-padded, and fmix64 is MurmurHash3's
 * finalizer (a bijection with full avalanche). With ascii_lower, bytes A-Z are hashed as a-z. */
#define H_POS 0x9E3779B97F4A7C15ULL
#define H_LEN 0xD6E8FEB86659FD93ULL
#define H_SEED 0x2545F4914F6CDD1DULL

static inline uint64_t fmix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDULL;
    k ^= k >> 33;
    k *= 0xC4CEB9FE1A85EC53ULL;
    k ^= k >> 33;
    return k;
}

static inline uint64_t hash_bytes(const uint8_t *p, Py_ssize_t len, int ascii_lower) {
    uint64_t acc = 0, k = 0;
    for (Py_ssize_t i = 0; i < len; i += 8, k++) {
        Py_ssize_t m = len - i < 8 ? len - i : 8;
        uint64_t w = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (m == 8 && !ascii_lower) {
            memcpy(&w, p + i, 8);
            acc += fmix64(w + k * H_POS + H_SEED);
            continue;
        }
#endif
        for (Py_ssize_t j = 0; j < m; j++) {
            uint8_t b = p[i + j];
            if (ascii_lower && b >= 'A' && b <= 'Z') b += 32;
            w |= (uint64_t)b << (8 * j);
        }
        acc += fmix64(w + k * H_POS + H_SEED);
    }
    return fmix64(acc + (uint64_t)len * H_LEN + H_SEED);
}


/* hash64(offsets, data, ascii_lower, out): hash64 of each string of an Arrow string array (with
 * ascii_lower, of its bytes with A-Z read as a-z) into uint64 out[n]. */
static PyObject *hash64(PyObject *self, PyObject *args) {
    StringArgs a;
    if (string_args(args, &a, "hash64") < 0) return NULL;
    const int32_t *off = a.offsets.buf;
    uint64_t *h = a.out.buf;
    for (Py_ssize_t i = 0; i < a.n; i++)
        h[i] = hash_bytes((const uint8_t *)a.data.buf + off[i], off[i + 1] - off[i], a.flag);
    release_string_args(&a);
    Py_RETURN_NONE;
}

/* token_hash64(offsets, data, ascii_lower, counts, hashes) -> number of tokens: the str.split() tokens of
 * each string (space_len's separators), hash64 of each token's bytes into uint64 hashes (only as many
 * as fit: the caller retries with a larger buffer when the result exceeds its capacity), and the number
 * of tokens of each string into int64 counts[n].
 *
 * trigram_hash64(offsets, data, ascii_lower, counts, hashes) -> number of trigrams: for each string, the
 * hashes of its consecutive token triples (a, b, c), fmix64(fmix64(fmix64(a ^ H_TRI) + b) + c) of the
 * tokens' hash64, into uint64 hashes (only as many as fit, as token_hash64), and the number of
 * trigrams of each string (tokens - 2, at least 0) into int64 counts[n]. */
#define H_TRI 0x8EBC6AF09C88C6E3ULL

static PyObject *split_hashes(PyObject *args, int trigrams, const char *name) {
    Py_buffer offsets, data, counts, hashes;
    int ascii_lower;
    if (!PyArg_ParseTuple(args, "y*y*pw*w*", &offsets, &data, &ascii_lower, &counts, &hashes)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = offsets.len / 4 - 1, cap = hashes.len / 8, t = 0;
    const int32_t *off = offsets.buf;
    const uint8_t *base = data.buf;
    int64_t *c = counts.buf;
    uint64_t *h = hashes.buf;
    if (n < 0 || counts.len < n * 8) {
        PyErr_Format(PyExc_ValueError, "%s: need n + 1 offsets and n int64 counts", name);
        goto done;
    }
    if (check_offsets(off, n, data.len, name) < 0) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *p = base + off[i], *end = base + off[i + 1], *start = NULL;
        Py_ssize_t before = t, tokens = 0;
        uint64_t a = 0, b = 0;
        while (p <= end) {
            int k = p < end ? space_len(p, end) : 1;
            if (k) {
                if (start) {
                    uint64_t x = hash_bytes(start, p - start, ascii_lower);
                    if (!trigrams) {
                        if (t < cap) h[t] = x;
                        t++;
                    } else {
                        if (++tokens >= 3) {
                            if (t < cap) h[t] = fmix64(fmix64(fmix64(a ^ H_TRI) + b) + x);
                            t++;
                        }
                        a = b;
                        b = x;
                    }
                    start = NULL;
                }
                p += k;
            } else {
                if (!start) start = p;
                p++;
            }
        }
        c[i] = t - before;
    }
    result = PyLong_FromSsize_t(t);
done:
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    PyBuffer_Release(&counts);
    PyBuffer_Release(&hashes);
    return result;
}

static PyObject *token_hash64(PyObject *self, PyObject *args) { return split_hashes(args, 0, "token_hash64"); }

static PyObject *trigram_hash64(PyObject *self, PyObject *args) {
    return split_hashes(args, 1, "trigram_hash64");
}

/* base36_keys(offsets int32[n+1], data, prefix bytes, out int64[n]) -> count of strings that are not
 * prefix + a canonical reddit id (1-12 chars of [0-9a-z], no leading zero); their out is -1.
 * idkeys.base36_keys is the Python face (and the numpy twin, same results). */
static PyObject *base36_keys(PyObject *self, PyObject *args) {
    Py_buffer offsets, data, prefix, out;
    if (!PyArg_ParseTuple(args, "y*y*y*w*", &offsets, &data, &prefix, &out)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = offsets.len / 4 - 1, bad = 0;
    const int32_t *off = offsets.buf;
    const uint8_t *d = data.buf, *pre = prefix.buf;
    int64_t *keys = out.buf;
    if (n < 0 || out.len < n * 8) {
        PyErr_SetString(PyExc_ValueError, "base36_keys: need n + 1 offsets and n int64 outputs");
        goto done;
    }
    if (check_offsets(off, n, data.len, "base36_keys") < 0) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *s = d + off[i];
        Py_ssize_t len = off[i + 1] - off[i] - prefix.len;
        int64_t v = 0;
        int ok = len >= 1 && len <= 12 && memcmp(s, pre, prefix.len) == 0;
        s += prefix.len;
        if (ok && s[0] == '0' && len > 1) ok = 0;
        for (Py_ssize_t j = 0; ok && j < len; j++) {
            uint8_t c = s[j];
            if (c >= '0' && c <= '9') v = v * 36 + (c - '0');
            else if (c >= 'a' && c <= 'z') v = v * 36 + (c - 'a' + 10);
            else ok = 0;
        }
        keys[i] = ok ? v : -1;
        bad += !ok;
    }
    result = PyLong_FromSsize_t(bad);
done:
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&out);
    return result;
}

/* crc32(offsets int32[n+1], data, out uint32[n]): zlib.crc32 of every string (table-driven). */
static uint32_t crc_table[256];
static int crc_table_ready = 0;

static PyObject *crc32_strings(PyObject *self, PyObject *args) {
    Py_buffer offsets, data, out;
    if (!PyArg_ParseTuple(args, "y*y*w*", &offsets, &data, &out)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = offsets.len / 4 - 1;
    const int32_t *off = offsets.buf;
    const uint8_t *d = data.buf;
    uint32_t *crc = out.buf;
    if (n < 0 || out.len < n * 4) {
        PyErr_SetString(PyExc_ValueError, "crc32: need n + 1 offsets and n uint32 outputs");
        goto done;
    }
    if (check_offsets(off, n, data.len, "crc32") < 0) goto done;
    if (!crc_table_ready) {
        for (uint32_t k = 0; k < 256; k++) {
            uint32_t c = k;
            for (int j = 0; j < 8; j++) c = c & 1 ? (c >> 1) ^ 0xEDB88320u : c >> 1;
            crc_table[k] = c;
        }
        crc_table_ready = 1;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t c = 0xFFFFFFFFu;
        for (int32_t j = off[i]; j < off[i + 1]; j++) c = crc_table[(c ^ d[j]) & 0xFF] ^ (c >> 8);
        crc[i] = c ^ 0xFFFFFFFFu;
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"crc32", crc32_strings, METH_VARARGS, "zlib.crc32 of every string of an Arrow string array."},
    {"base36_keys", base36_keys, METH_VARARGS, "int64 values of base-36 reddit ids (after a prefix)."},
    {"token_counts", token_counts, METH_VARARGS, "len(s.split()) per string of an Arrow string array."},
    {"parse_lines", parse_lines, METH_VARARGS, "Dump lines -> typed columns; see _fastjson.c."},
    {"newlines", newlines, METH_VARARGS, "Offsets of the newlines of a buffer, as int64 bytes."},
    {"hash64", hash64, METH_VARARGS, "64-bit hash of each string of an Arrow string array."},
    {"token_hash64", token_hash64, METH_VARARGS, "64-bit hashes of the str.split() tokens of each string."},
    {"trigram_hash64", trigram_hash64, METH_VARARGS, "64-bit hashes of the token trigrams of each string."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastjson", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastjson(void) {
    init_tables();
    return PyModule_Create(&module);
}

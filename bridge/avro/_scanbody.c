/* One scan record's value, framed, written in one allocation (bridge.avro.encoder's fast path),
 * and the pass sub-record it carries (both paths).
 *
 * The Python writer made a bytes object per field and joined them: about fifteen allocations
 * and a join per scan. Here the fields' sizes are summed first and the value is written
 * straight into one bytes object. The bytes must be the per-scan path's (Encoder._body):
 * tests/unit/kafka/test_scan_records.py compares the two on hostile pages, and the Avro
 * round-trip tests read the result with fastavro and Apache's decoder.
 *
 * Where each holder scans once (an event's gates), nearly every scan brings a pass the
 * encoder has not seen, so the pass record is written once per scan: 7 us in Python, a
 * fifth of the bridge's CPU per scan at that cardinality (bench/README.md).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>
#include <string.h>

/* Avro's zig-zag varint. */
static Py_ssize_t long_size(int64_t n) {
    uint64_t z = ((uint64_t)n << 1) ^ (uint64_t)(n >> 63);
    Py_ssize_t size = 1;
    while (z > 0x7F) {
        z >>= 7;
        size++;
    }
    return size;
}

static char *put_long(char *out, int64_t n) {
    uint64_t z = ((uint64_t)n << 1) ^ (uint64_t)(n >> 63);
    while (z > 0x7F) {
        *out++ = (char)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    *out++ = (char)z;
    return out;
}

/* A string field's UTF-8, or an optional one's (data NULL for None). */
typedef struct {
    const char *data;
    Py_ssize_t size;
} Text;

static int text_of(PyObject *value, const char *field, int optional, Text *text) {
    if (value == Py_None && optional) {
        text->data = NULL;
        text->size = 0;
        return 0;
    }
    if (!PyUnicode_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be str%s, not %.80s", field,
                     optional ? " or None" : "", Py_TYPE(value)->tp_name);
        return -1;
    }
    /* A lone surrogate raises UnicodeEncodeError, as str.encode() does: the caller
     * dead-letters the scan. */
    text->data = PyUnicode_AsUTF8AndSize(value, &text->size);
    return text->data == NULL ? -1 : 0;
}

static Py_ssize_t text_size(const Text *text, int optional) {
    if (text->data == NULL)
        return 1; /* the null branch */
    return (optional ? 1 : 0) + long_size(text->size) + text->size;
}

static char *put_text(char *out, const Text *text, int optional) {
    if (text->data == NULL) {
        *out++ = 0;
        return out;
    }
    if (optional)
        *out++ = 2; /* branch 1: the string */
    out = put_long(out, text->size);
    memcpy(out, text->data, (size_t)text->size);
    return out + text->size;
}

/* Days from 1970-01-01 to a proleptic Gregorian date: the era arithmetic of the civil
 * calendar (400-year cycles of 146097 days), exact for years 1..9999. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* A time field: None, Unix milliseconds, or an aware datetime in UTC (as PassEntry writes
 * times), floored to the millisecond as ``(t - epoch) // timedelta(milliseconds=1)``. A
 * datetime in another zone (or none) goes to ``to_millis`` where one is given, and is an
 * error where not. */
static int time_of(PyObject *value, const char *field, PyObject *to_millis, int *present,
                   int64_t *millis) {
    if (value == Py_None) {
        *present = 0;
        return 0;
    }
    *present = 1;
    if (PyLong_Check(value)) {
        *millis = PyLong_AsLongLong(value);
        return *millis == -1 && PyErr_Occurred() ? -1 : 0;
    }
    if (PyDateTime_Check(value)) {
        PyObject *tz = PyDateTime_DATE_GET_TZINFO(value);
        if (tz != PyDateTime_TimeZone_UTC) {
            if (to_millis == NULL) {
                PyErr_Format(PyExc_TypeError, "%s must be in datetime.UTC", field);
                return -1;
            }
            PyObject *converted = PyObject_CallOneArg(to_millis, value);
            if (converted == NULL)
                return -1;
            if (!PyLong_Check(converted)) {
                PyErr_Format(PyExc_TypeError, "to_millis(%s) must return int, not %.80s", field,
                             Py_TYPE(converted)->tp_name);
                Py_DECREF(converted);
                return -1;
            }
            *millis = PyLong_AsLongLong(converted);
            Py_DECREF(converted);
            return *millis == -1 && PyErr_Occurred() ? -1 : 0;
        }
        int64_t days = days_from_civil(PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value),
                                       PyDateTime_GET_DAY(value));
        int64_t seconds = days * 86400 + PyDateTime_DATE_GET_HOUR(value) * 3600 +
                          PyDateTime_DATE_GET_MINUTE(value) * 60 +
                          PyDateTime_DATE_GET_SECOND(value);
        /* Microseconds are 0..999999, so floor division is C's for the sub-second part. */
        *millis = seconds * 1000 + PyDateTime_DATE_GET_MICROSECOND(value) / 1000;
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s must be None, int or datetime, not %.80s", field,
                 Py_TYPE(value)->tp_name);
    return -1;
}

static Py_ssize_t time_size(int present, int64_t millis) {
    return present ? 1 + long_size(millis) : 1;
}

static char *put_time(char *out, int present, int64_t millis) {
    if (!present) {
        *out++ = 0;
        return out;
    }
    *out++ = 2;
    return put_long(out, millis);
}

static int buffer_of(PyObject *value, const char *field, Text *bytes) {
    if (!PyBytes_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes, not %.80s", field,
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    bytes->data = PyBytes_AS_STRING(value);
    bytes->size = PyBytes_GET_SIZE(value);
    return 0;
}

enum {
    PREFIX, SCAN_ID, CREATED_MS, SCANNED_AT, SCAN_TYPE, SCAN_VALUE, VALIDATION_TYPE, STATUS,
    STATUS_DETAIL, READER_ID, PASS_ID, SOURCE, PASS_BYTES, READER_BYTES, N_ARGS
};

PyDoc_STRVAR(write_doc,
"write(prefix, scan_id, created_ms, scanned_at, scan_type, scan_value, validation_type,\n"
"      status, status_detail, reader_id, pass_id, source, pass_bytes, reader_bytes) -> bytes\n"
"\n"
"``prefix`` (the framing) and the scan record's Avro fields in schema order. ``source``,\n"
"``pass_bytes`` and ``reader_bytes`` are already encoded; ``scanned_at`` is None, Unix\n"
"milliseconds, or a datetime in datetime.UTC. Raises UnicodeEncodeError for a lone\n"
"surrogate, OverflowError for a time past a 64-bit long, TypeError for any other type.");

static PyObject *scanbody_write(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != N_ARGS) {
        PyErr_Format(PyExc_TypeError, "write() takes %d arguments (%zd given)", N_ARGS, nargs);
        return NULL;
    }
    Text prefix, scan_id, scan_type, scan_value, validation_type, status, detail, reader_id,
        pass_id, source, pass_bytes, reader_bytes;
    int scanned_present;
    int64_t scanned = 0;
    int64_t created = PyLong_AsLongLong(args[CREATED_MS]);
    if (created == -1 && PyErr_Occurred())
        return NULL;
    if (buffer_of(args[PREFIX], "prefix", &prefix) < 0 ||
        text_of(args[SCAN_ID], "scan_id", 0, &scan_id) < 0 ||
        time_of(args[SCANNED_AT], "scanned_at", NULL, &scanned_present, &scanned) < 0 ||
        text_of(args[SCAN_TYPE], "scan_type", 0, &scan_type) < 0 ||
        text_of(args[SCAN_VALUE], "scan_value", 1, &scan_value) < 0 ||
        text_of(args[VALIDATION_TYPE], "validation_type", 0, &validation_type) < 0 ||
        text_of(args[STATUS], "status", 0, &status) < 0 ||
        text_of(args[STATUS_DETAIL], "status_detail", 1, &detail) < 0 ||
        text_of(args[READER_ID], "reader_id", 0, &reader_id) < 0 ||
        text_of(args[PASS_ID], "pass_id", 1, &pass_id) < 0 ||
        buffer_of(args[SOURCE], "source", &source) < 0 ||
        buffer_of(args[PASS_BYTES], "pass_bytes", &pass_bytes) < 0 ||
        buffer_of(args[READER_BYTES], "reader_bytes", &reader_bytes) < 0)
        return NULL;

    Py_ssize_t size = prefix.size + text_size(&scan_id, 0) + long_size(created) +
                      time_size(scanned_present, scanned) +
                      text_size(&scan_type, 0) + text_size(&scan_value, 1) +
                      text_size(&validation_type, 0) + text_size(&status, 0) +
                      text_size(&detail, 1) + text_size(&reader_id, 0) +
                      text_size(&pass_id, 1) + source.size + pass_bytes.size + reader_bytes.size;
    PyObject *result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(result);
    memcpy(out, prefix.data, (size_t)prefix.size);
    out += prefix.size;
    out = put_text(out, &scan_id, 0);
    out = put_long(out, created);
    out = put_time(out, scanned_present, scanned);
    out = put_text(out, &scan_type, 0);
    out = put_text(out, &scan_value, 1);
    out = put_text(out, &validation_type, 0);
    out = put_text(out, &status, 0);
    out = put_text(out, &detail, 1);
    out = put_text(out, &reader_id, 0);
    out = put_text(out, &pass_id, 1);
    memcpy(out, source.data, (size_t)source.size);
    out += source.size;
    memcpy(out, pass_bytes.data, (size_t)pass_bytes.size);
    out += pass_bytes.size;
    memcpy(out, reader_bytes.data, (size_t)reader_bytes.size);
    out += reader_bytes.size;
    if (out != PyBytes_AS_STRING(result) + size) {
        Py_DECREF(result);
        PyErr_SetString(PyExc_SystemError, "scan body size mismatch");
        return NULL;
    }
    return result;
}

/* The pass record's strings, in schema order (id first; the rest optional). */
enum { P_ID, P_EXT_ID, P_PASS_TYPE, P_STATUS, P_DEVICE_TYPE, P_TEMPLATE_UUID, P_TEMPLATE_NAME,
       P_DOWNLOAD_URL, P_NFC, P_TEXTS };
static const char *const pass_texts[P_TEXTS] = {
    "id", "ext_id", "pass_type", "status", "device_type", "pass_template_uuid",
    "pass_template_name", "download_url", "nfc"};
enum { P_BARCODE = P_TEXTS, P_CONTENT, P_CREATED_AT, P_ADDED_AT, P_REMOVED_AT,
       P_DEACTIVATED_AT, P_STRINGIFY, P_TO_MILLIS, P_ARGS };
#define P_TIMES 4
static const char *const pass_times[P_TIMES] = {"created_at", "added_at", "removed_at",
                                                "deactivated_at"};

/* The passContent map's entries: its keys, and each value as is if it is a str, else
 * ``stringify(value)`` (JSON text). Holds a reference to each key and value it reads, whose
 * UTF-8 it points to: ``stringify`` is Python, and runs between the reads. */
typedef struct {
    Py_ssize_t n;
    Text *keys;
    Text *values;
    PyObject **held; /* key, value, key, value, ... */
} Content;

static void content_free(Content *content) {
    for (Py_ssize_t i = 0; i < 2 * content->n; i++)
        Py_XDECREF(content->held[i]);
    PyMem_Free(content->keys);
    PyMem_Free(content->values);
    PyMem_Free(content->held);
}

static int content_of(PyObject *map, PyObject *stringify, Content *content) {
    content->n = 0;
    content->keys = content->values = NULL;
    content->held = NULL;
    if (map == Py_None)
        return 0;
    if (!PyDict_Check(map)) {
        PyErr_Format(PyExc_TypeError, "pass_content must be dict or None, not %.80s",
                     Py_TYPE(map)->tp_name);
        return -1;
    }
    Py_ssize_t size = PyDict_GET_SIZE(map);
    if (size == 0)
        return 0;
    content->keys = PyMem_New(Text, size);
    content->values = PyMem_New(Text, size);
    content->held = PyMem_New(PyObject *, 2 * size);
    if (content->keys == NULL || content->values == NULL || content->held == NULL) {
        content_free(content);
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(map, &pos, &key, &value)) {
        Py_ssize_t i = content->n;
        if (i == size) {
            content_free(content);
            PyErr_SetString(PyExc_RuntimeError, "pass_content changed size while written");
            return -1;
        }
        content->held[2 * i] = Py_NewRef(key);
        content->held[2 * i + 1] = NULL;
        content->n = i + 1;
        PyObject *text;
        if (PyUnicode_Check(value)) {
            text = Py_NewRef(value);
        } else {
            Py_INCREF(value);
            text = PyObject_CallOneArg(stringify, value);
            Py_DECREF(value);
        }
        if (text == NULL) {
            content_free(content);
            return -1;
        }
        content->held[2 * i + 1] = text;
        if (text_of(key, "pass_content key", 0, &content->keys[i]) < 0 ||
            text_of(text, "pass_content value", 0, &content->values[i]) < 0) {
            content_free(content);
            return -1;
        }
    }
    return 0;
}

PyDoc_STRVAR(write_pass_doc,
"write_pass(id, ext_id, pass_type, status, device_type, pass_template_uuid,\n"
"           pass_template_name, download_url, nfc, barcode, pass_content, created_at,\n"
"           added_at, removed_at, deactivated_at, stringify, to_millis) -> bytes\n"
"\n"
"The ``pass`` union's bytes for a pass: branch 1, then the record's fields in schema order.\n"
"``barcode`` is already encoded. ``pass_content`` is a dict with str keys (or None, an\n"
"empty map); a value that is not a str is written as ``stringify(value)``. A time is None,\n"
"Unix milliseconds, or a datetime, one not in datetime.UTC written as ``to_millis(t)``.\n"
"Raises UnicodeEncodeError for a lone surrogate, OverflowError for a time past a 64-bit\n"
"long, TypeError for any other type.");

static PyObject *scanbody_write_pass(PyObject *module, PyObject *const *args,
                                     Py_ssize_t nargs) {
    (void)module;
    if (nargs != P_ARGS) {
        PyErr_Format(PyExc_TypeError, "write_pass() takes %d arguments (%zd given)", P_ARGS,
                     nargs);
        return NULL;
    }
    Text texts[P_TEXTS], barcode;
    int present[P_TIMES];
    int64_t millis[P_TIMES] = {0};
    for (int i = 0; i < P_TEXTS; i++)
        if (text_of(args[i], pass_texts[i], i != P_ID, &texts[i]) < 0)
            return NULL;
    if (buffer_of(args[P_BARCODE], "barcode", &barcode) < 0)
        return NULL;
    for (int i = 0; i < P_TIMES; i++)
        if (time_of(args[P_CREATED_AT + i], pass_times[i], args[P_TO_MILLIS], &present[i],
                    &millis[i]) < 0)
            return NULL;
    Content content;
    if (content_of(args[P_CONTENT], args[P_STRINGIFY], &content) < 0)
        return NULL;

    Py_ssize_t size = 1 + barcode.size;
    for (int i = 0; i < P_TEXTS; i++)
        size += text_size(&texts[i], i != P_ID);
    /* A map: one block of all its entries, then the empty block (fastavro's layout). */
    if (content.n > 0)
        size += long_size(content.n);
    for (Py_ssize_t i = 0; i < content.n; i++)
        size += text_size(&content.keys[i], 0) + text_size(&content.values[i], 0);
    size += 1;
    for (int i = 0; i < P_TIMES; i++)
        size += time_size(present[i], millis[i]);

    PyObject *result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL) {
        content_free(&content);
        return NULL;
    }
    char *out = PyBytes_AS_STRING(result);
    *out++ = 2; /* branch 1: the record */
    for (int i = 0; i < P_TEXTS; i++)
        out = put_text(out, &texts[i], i != P_ID);
    memcpy(out, barcode.data, (size_t)barcode.size);
    out += barcode.size;
    if (content.n > 0)
        out = put_long(out, content.n);
    for (Py_ssize_t i = 0; i < content.n; i++) {
        out = put_text(out, &content.keys[i], 0);
        out = put_text(out, &content.values[i], 0);
    }
    *out++ = 0;
    for (int i = 0; i < P_TIMES; i++)
        out = put_time(out, present[i], millis[i]);
    content_free(&content);
    if (out != PyBytes_AS_STRING(result) + size) {
        Py_DECREF(result);
        PyErr_SetString(PyExc_SystemError, "pass record size mismatch");
        return NULL;
    }
    return result;
}

static PyMethodDef methods[] = {
    {"write", (PyCFunction)(void (*)(void))scanbody_write, METH_FASTCALL, write_doc},
    {"write_pass", (PyCFunction)(void (*)(void))scanbody_write_pass, METH_FASTCALL,
     write_pass_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "bridge.avro._scanbody",
    .m_doc = "A scan record's framed Avro value, and its pass record, each in one allocation.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__scanbody(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    return PyModule_Create(&module);
}

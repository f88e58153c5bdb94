/* The fast path's record for one listed scan (bridge.kafka.scan_records), made without a
 * line of Python per scan.
 *
 * record() does what ScanRecords' Python loop does for a scan whose pass, reader, route and
 * Avro pieces are all known already, and returns the OutRecord. For anything else it
 * returns None and makes nothing: a pass or reader missing from the page or not yet encoded,
 * a route not yet framed in this batch, a scannedAt not in UTC, a value the Avro writer
 * refuses. The Python loop then takes that scan, and fills the caches that the next scans
 * of its kind find here. tests/unit/kafka/test_scan_records.py compares the records with
 * the per-scan path's, byte for byte, on hostile pages.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>

/* As bridge.kafka.scan_records: more reader ids than this, and the key cache starts over. */
#define KEYS_MAX 10000
/* bridge.cloudevents.RFC3339_END_MS: 10000-01-01T00:00:00Z, the first time without ce_time. */
#define RFC3339_END_MS 253402300800000LL

static PyObject *write_body; /* bridge.avro._scanbody.write */
static PyObject *out_record; /* bridge.kafka.records.OutRecord */
static PyObject *null_union; /* b"\x00": the pass union's null branch */

/* Attribute names and header keys, made once. */
static PyObject *s_scan, *s_page, *s_resource, *s_relationships, *s_reader, *s_pass_, *s_data,
    *s_id, *s_readers, *s_passes, *s_attributes, *s_status, *s_scan_type, *s_scan_value,
    *s_validation_type, *s_status_detail, *s_scanned_at, *s_id_int, *h_scan_id,
    *h_scan_created_ms, *h_ce_id, *h_ce_time;

/* ``obj.<name>.data.id`` for a relationship, or None where a link is None. New reference. */
static PyObject *related_id(PyObject *relationships, PyObject *name) {
    PyObject *rel = PyObject_GetAttr(relationships, name);
    if (rel == NULL || rel == Py_None)
        return rel;
    PyObject *data = PyObject_GetAttr(rel, s_data);
    Py_DECREF(rel);
    if (data == NULL || data == Py_None)
        return data;
    PyObject *id = PyObject_GetAttr(data, s_id);
    Py_DECREF(data);
    return id;
}

/* The Avro bytes the encoder keeps for ``resource`` (bridge.avro.encoder.Encoder.objects:
 * id -> (resource, bytes)), or NULL without an error when it has none. A new reference:
 * what allocates before its use may run the collector, and finalizers, meanwhile. */
static PyObject *encoded(PyObject *objects, PyObject *resource) {
    PyObject *key = PyLong_FromVoidPtr(resource);
    if (key == NULL)
        return NULL;
    PyObject *known = PyDict_GetItemWithError(objects, key);
    Py_DECREF(key);
    if (known == NULL || !PyTuple_Check(known) || PyTuple_GET_SIZE(known) != 2 ||
        PyTuple_GET_ITEM(known, 0) != resource || !PyBytes_Check(PyTuple_GET_ITEM(known, 1)))
        return NULL;
    return Py_NewRef(PyTuple_GET_ITEM(known, 1));
}

/* ``width`` decimal digits of ``n`` (>= 0), zero-padded, ending just before ``end``. */
static void put_digits(char *end, int64_t n, int width) {
    while (width-- > 0) {
        *--end = (char)('0' + n % 10);
        n /= 10;
    }
}

/* ``ms`` in decimal, as str() writes an int. */
static PyObject *decimal(int64_t ms) {
    char text[24];
    char *end = text + sizeof text, *start = end;
    uint64_t n = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
    do {
        *--start = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    if (ms < 0)
        *--start = '-';
    return PyUnicode_FromStringAndSize(start, end - start);
}

/* RFC 3339 in UTC with milliseconds, as bridge.cloudevents.TimeFormatter writes it, for
 * 0 <= ms < RFC3339_END_MS. The civil date of a day count: the inverse of the era
 * arithmetic in bridge/avro/_scanbody.c. */
static PyObject *rfc3339(int64_t ms) {
    int64_t days = ms / 86400000, rest = ms % 86400000;
    int64_t z = days + 719468;
    int64_t era = z / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t day = doy - (153 * mp + 2) / 5 + 1;
    int64_t month = mp < 10 ? mp + 3 : mp - 9;
    int64_t year = yoe + era * 400 + (month <= 2);
    char text[] = "YYYY-MM-DDThh:mm:ss.fffZ";
    put_digits(text + 4, year, 4);
    put_digits(text + 7, month, 2);
    put_digits(text + 10, day, 2);
    put_digits(text + 13, rest / 3600000, 2);
    put_digits(text + 16, rest / 60000 % 60, 2);
    put_digits(text + 19, rest / 1000 % 60, 2);
    put_digits(text + 23, rest % 1000, 3);
    return PyUnicode_FromStringAndSize(text, sizeof text - 1);
}

static PyObject *pair(PyObject *name, PyObject *value) {
    return value == NULL ? NULL : PyTuple_Pack(2, name, value);
}

PyDoc_STRVAR(record_doc,
"record(item, routes, objects, keys, source) -> OutRecord | None\n"
"\n"
"The record of ``item`` (a Listed scan), or None where the Python loop must make it.\n"
"``routes`` maps (status, scan type) to (topic, framing prefix, topic headers) for this\n"
"batch, ``objects`` is the encoder's Avro bytes by resource id, ``keys`` the record keys by\n"
"reader id (filled here), ``source`` the encoded source id.");

static PyObject *record(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "record() takes 5 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *item = args[0], *routes = args[1], *objects = args[2], *keys = args[3],
             *source = args[4];
    if (!PyDict_Check(routes) || !PyDict_Check(objects) || !PyDict_Check(keys)) {
        PyErr_SetString(PyExc_TypeError, "routes, objects and keys must be dicts");
        return NULL;
    }
    PyObject *result = NULL;
    PyObject *scan = NULL, *page = NULL, *resource = NULL, *relationships = NULL,
             *reader_id = NULL, *pass_id = NULL, *readers = NULL, *passes = NULL,
             *attrs = NULL, *status = NULL, *scan_type = NULL, *route_key = NULL,
             *scanned_at = NULL, *id_int = NULL, *created = NULL, *scan_id = NULL,
             *scan_value = NULL, *validation_type = NULL, *detail = NULL, *value = NULL,
             *headers = NULL, *shift = NULL, *route = NULL, *key = NULL, *reader_bytes = NULL,
             *pass_bytes = NULL;

#define GET(target, owner, name)                     \
    if ((target = PyObject_GetAttr(owner, name)) == NULL) \
        goto done;
#define DECLINE()               \
    do {                        \
        result = Py_NewRef(Py_None); \
        goto done;              \
    } while (0)

    GET(scan, item, s_scan);
    GET(page, item, s_page);
    GET(resource, scan, s_resource);
    GET(relationships, resource, s_relationships);
    if ((reader_id = related_id(relationships, s_reader)) == NULL)
        goto done;
    if (!PyUnicode_Check(reader_id) || PyUnicode_GET_LENGTH(reader_id) == 0)
        DECLINE();
    if ((pass_id = related_id(relationships, s_pass_)) == NULL)
        goto done;
    if (pass_id != Py_None && !PyUnicode_Check(pass_id))
        DECLINE();
    GET(readers, page, s_readers);
    GET(passes, page, s_passes);
    if (!PyDict_Check(readers) || !PyDict_Check(passes))
        DECLINE();
    /* Borrowed: only looked up in the encoder's objects, before anything allocates. */
    PyObject *reader = PyDict_GetItemWithError(readers, reader_id);
    if (reader == NULL) {
        if (PyErr_Occurred())
            goto done;
        DECLINE();
    }
    reader_bytes = encoded(objects, reader);
    if (reader_bytes == NULL) {
        if (PyErr_Occurred())
            goto done;
        DECLINE();
    }
    if (pass_id == Py_None) {
        pass_bytes = Py_NewRef(null_union);
    } else {
        PyObject *pass = PyDict_GetItemWithError(passes, pass_id);
        if (pass == NULL || (pass_bytes = encoded(objects, pass)) == NULL) {
            if (PyErr_Occurred())
                goto done;
            DECLINE();
        }
    }
    GET(attrs, resource, s_attributes);
    GET(status, attrs, s_status);
    GET(scan_type, attrs, s_scan_type);
    if ((route_key = PyTuple_Pack(2, status, scan_type)) == NULL)
        goto done;
    /* Owned from here: making the headers below may run the collector, and with it any
     * finalizer, before the route's topic is used. */
    route = Py_XNewRef(PyDict_GetItemWithError(routes, route_key));
    if (route == NULL) {
        if (PyErr_Occurred())
            goto done;
        DECLINE();
    }
    if (!PyTuple_Check(route) || PyTuple_GET_SIZE(route) != 3 ||
        !PyList_Check(PyTuple_GET_ITEM(route, 2))) {
        PyErr_SetString(PyExc_TypeError, "a route is (topic, prefix, headers)");
        goto done;
    }
    GET(scanned_at, attrs, s_scanned_at);
    if (scanned_at != Py_None &&
        !(PyDateTime_Check(scanned_at) &&
          PyDateTime_DATE_GET_TZINFO(scanned_at) == PyDateTime_TimeZone_UTC))
        DECLINE(); /* another offset, or none: the Python loop converts it */
    GET(id_int, scan, s_id_int);
    if ((shift = PyLong_FromLong(80)) == NULL || (created = PyNumber_Rshift(id_int, shift)) == NULL)
        goto done;
    long long created_ms = PyLong_AsLongLong(created);
    if (created_ms == -1 && PyErr_Occurred())
        goto done;
    GET(scan_id, resource, s_id);
    GET(scan_value, attrs, s_scan_value);
    GET(validation_type, attrs, s_validation_type);
    GET(detail, attrs, s_status_detail);
    PyObject *body_args[] = {
        PyTuple_GET_ITEM(route, 1), scan_id, created, scanned_at, scan_type, scan_value,
        validation_type, status, detail, reader_id, pass_id, source, pass_bytes, reader_bytes,
    };
    value = PyObject_Vectorcall(write_body, body_args, 14, NULL);
    if (value == NULL) {
        /* What the encoder refuses (a lone surrogate, say): the Python loop dead-letters it. */
        if (PyErr_ExceptionMatches(PyExc_ValueError) || PyErr_ExceptionMatches(PyExc_TypeError) ||
            PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            DECLINE();
        }
        goto done;
    }

    PyObject *topic_headers = PyTuple_GET_ITEM(route, 2);
    Py_ssize_t shared = PyList_GET_SIZE(topic_headers);
    int with_time = 0 <= created_ms && created_ms < RFC3339_END_MS;
    if ((headers = PyList_New(shared + 3 + with_time)) == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < shared; i++)
        PyList_SET_ITEM(headers, i, Py_NewRef(PyList_GET_ITEM(topic_headers, i)));
    PyObject *header;
    if ((header = pair(h_scan_id, scan_id)) == NULL)
        goto done;
    PyList_SET_ITEM(headers, shared, header);
    PyObject *created_text = decimal(created_ms);
    header = pair(h_scan_created_ms, created_text);
    Py_XDECREF(created_text);
    if (header == NULL)
        goto done;
    PyList_SET_ITEM(headers, shared + 1, header);
    if ((header = pair(h_ce_id, scan_id)) == NULL)
        goto done;
    PyList_SET_ITEM(headers, shared + 2, header);
    if (with_time) {
        PyObject *time_text = rfc3339(created_ms);
        header = pair(h_ce_time, time_text);
        Py_XDECREF(time_text);
        if (header == NULL)
            goto done;
        PyList_SET_ITEM(headers, shared + 3, header);
    }

    key = Py_XNewRef(PyDict_GetItemWithError(keys, reader_id));
    if (key == NULL) {
        if (PyErr_Occurred())
            goto done;
        if (PyDict_GET_SIZE(keys) >= KEYS_MAX)
            PyDict_Clear(keys);
        PyObject *made = PyUnicode_AsUTF8String(reader_id);
        if (made == NULL) {
            if (PyErr_ExceptionMatches(PyExc_ValueError)) { /* cannot be a key: as above */
                PyErr_Clear();
                DECLINE();
            }
            goto done;
        }
        if (PyDict_SetItem(keys, reader_id, made) < 0) {
            Py_DECREF(made);
            goto done;
        }
        key = made;
    }
    PyObject *record_args[] = {PyTuple_GET_ITEM(route, 0), key, value, headers, created};
    result = PyObject_Vectorcall(out_record, record_args, 5, NULL);

done:
    Py_XDECREF(scan);
    Py_XDECREF(page);
    Py_XDECREF(resource);
    Py_XDECREF(relationships);
    Py_XDECREF(reader_id);
    Py_XDECREF(pass_id);
    Py_XDECREF(readers);
    Py_XDECREF(passes);
    Py_XDECREF(attrs);
    Py_XDECREF(status);
    Py_XDECREF(scan_type);
    Py_XDECREF(route_key);
    Py_XDECREF(scanned_at);
    Py_XDECREF(id_int);
    Py_XDECREF(shift);
    Py_XDECREF(created);
    Py_XDECREF(scan_id);
    Py_XDECREF(scan_value);
    Py_XDECREF(validation_type);
    Py_XDECREF(detail);
    Py_XDECREF(value);
    Py_XDECREF(headers);
    Py_XDECREF(route);
    Py_XDECREF(key);
    Py_XDECREF(reader_bytes);
    Py_XDECREF(pass_bytes);
    return result;
#undef GET
#undef DECLINE
}

static PyMethodDef methods[] = {
    {"record", (PyCFunction)(void (*)(void))record, METH_FASTCALL, record_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "bridge.kafka._scanrecord",
    .m_doc = "The fast path's record for one listed scan.",
    .m_size = -1,
    .m_methods = methods,
};

static PyObject *attribute_of(const char *module_name, const char *name) {
    PyObject *owner = PyImport_ImportModule(module_name);
    if (owner == NULL)
        return NULL;
    PyObject *value = PyObject_GetAttrString(owner, name);
    Py_DECREF(owner);
    return value;
}

PyMODINIT_FUNC PyInit__scanrecord(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    struct {
        PyObject **target;
        const char *text;
    } names[] = {
        {&s_scan, "scan"}, {&s_page, "page"}, {&s_resource, "resource"},
        {&s_relationships, "relationships"}, {&s_reader, "reader"}, {&s_pass_, "pass_"},
        {&s_data, "data"}, {&s_id, "id"}, {&s_readers, "readers"}, {&s_passes, "passes"},
        {&s_attributes, "attributes"}, {&s_status, "status"}, {&s_scan_type, "scan_type"},
        {&s_scan_value, "scan_value"}, {&s_validation_type, "validation_type"},
        {&s_status_detail, "status_detail"}, {&s_scanned_at, "scanned_at"},
        {&s_id_int, "id_int"}, {&h_scan_id, "scan-id"},
        {&h_scan_created_ms, "scan-created-ms"}, {&h_ce_id, "ce_id"}, {&h_ce_time, "ce_time"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].target = PyUnicode_InternFromString(names[i].text)) == NULL)
            return NULL;
    if ((null_union = PyBytes_FromStringAndSize("\0", 1)) == NULL ||
        (write_body = attribute_of("bridge.avro._scanbody", "write")) == NULL ||
        (out_record = attribute_of("bridge.kafka.records", "OutRecord")) == NULL)
        return NULL;
    return PyModule_Create(&module);
}

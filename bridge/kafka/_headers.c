/* One header of a consumed record, without confluent-kafka turning all of them into Python
 * (bridge.kafka.readback).
 *
 * A restore reads back every record of the lookback on the topics a source writes, the
 * other sources' too, and keeps those whose ``source-id`` header is its own. Message.headers()
 * makes a list of eleven (name, value) tuples for each: about 3.5 µs of the 8 µs a record
 * costs the restore (bench/README.md). header() reads the one header it is asked for from
 * librdkafka's copy that the Message holds until headers() is first called.
 *
 * confluent-kafka has no public way to reach that copy. Its Message struct starts with the
 * object header, then topic, value, key, the converted headers and librdkafka's headers
 * (confluent_kafka.h), and has in every release since headers came. checked() verifies
 * that layout on a real message before the caller relies on it: the struct's topic, value
 * and key are the very objects the methods return, every header read through librdkafka's
 * copy is in the list headers() then makes, in order, and the struct then holds that list
 * and no copy, as Message.headers() leaves it. Anything else and the caller keeps
 * Message.headers(). librdkafka's functions are those confluent-kafka's extension module
 * calls, looked up through it: never another copy.
 */
#include "_cimpl.h"

/* librdkafka's public ABI (rdkafka.h), declared here so that building needs no headers. */
typedef struct rd_kafka_headers_s rd_kafka_headers_t;

static size_t (*header_cnt)(const rd_kafka_headers_t *);
static int (*header_get_all)(const rd_kafka_headers_t *, size_t, const char **, const void **,
                             size_t *);
static int (*header_get_last)(const rd_kafka_headers_t *, const char *, const void **,
                              size_t *);

/* The start of confluent-kafka's Message. */
typedef struct {
    PyObject_HEAD
    PyObject *topic;
    PyObject *value;
    PyObject *key;
    PyObject *headers;
    rd_kafka_headers_t *c_headers;
} MessageHead;

static PyTypeObject *message_type; /* confluent_kafka.Message; NULL: header() takes nothing */
static int verified; /* checked() has seen the layout on a real message */

/* librdkafka's functions as confluent-kafka's extension module resolves them; 0 where that
 * fails. */
static int load(void *lib) {
    if (lib == NULL)
        return 0;
    *(void **)&header_cnt = dlsym(lib, "rd_kafka_header_cnt");
    *(void **)&header_get_all = dlsym(lib, "rd_kafka_header_get_all");
    *(void **)&header_get_last = dlsym(lib, "rd_kafka_header_get_last");
    return header_cnt && header_get_all && header_get_last;
}

/* Whether the method ``name`` of ``msg`` returns the object at ``slot`` (None for NULL). */
static int same(PyObject *msg, const char *name, PyObject *slot) {
    PyObject *got = PyObject_CallMethod(msg, name, NULL);
    if (got == NULL) {
        PyErr_Clear();
        return 0;
    }
    int ok = got == (slot != NULL ? slot : Py_None);
    Py_DECREF(got);
    return ok;
}

PyDoc_STRVAR(checked_doc,
"checked(message) -> bool | None\n"
"\n"
"Whether header() may read messages like ``message`` (a consumed confluent_kafka.Message):\n"
"the layout is verified on it, which calls its headers(). None when ``message`` cannot\n"
"tell (it has no headers, or its headers() was called): ask again with another.");

static PyObject *checked(PyObject *self, PyObject *msg) {
    (void)self;
    if (message_type == NULL || !Py_IS_TYPE(msg, message_type))
        Py_RETURN_FALSE;
    if (verified)
        Py_RETURN_TRUE;
    MessageHead *m = (MessageHead *)msg;
    if (!same(msg, "topic", m->topic) || !same(msg, "value", m->value) ||
        !same(msg, "key", m->key))
        Py_RETURN_FALSE;
    if (m->headers != NULL || m->c_headers == NULL)
        Py_RETURN_NONE;
    /* What librdkafka's copy holds, before headers() converts and frees it. */
    size_t count = header_cnt(m->c_headers);
    PyObject *seen = PyList_New(0);
    if (seen == NULL)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        const char *name;
        const void *value;
        size_t size;
        if (header_get_all(m->c_headers, i, &name, &value, &size) != 0)
            break;
        PyObject *pair = value == NULL
            ? Py_BuildValue("(sO)", name, Py_None)
            : Py_BuildValue("(sy#)", name, (const char *)value, (Py_ssize_t)size);
        if (pair == NULL || PyList_Append(seen, pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(seen);
            return NULL;
        }
        Py_DECREF(pair);
    }
    PyObject *converted = PyObject_CallMethod(msg, "headers", NULL);
    if (converted == NULL) {
        Py_DECREF(seen);
        return NULL;
    }
    int ok = PyList_GET_SIZE(seen) == (Py_ssize_t)count && m->headers == converted &&
             m->c_headers == NULL;
    if (ok) {
        int equal = PyObject_RichCompareBool(seen, converted, Py_EQ);
        ok = equal == 1;
        if (equal < 0)
            PyErr_Clear();
    }
    Py_DECREF(seen);
    Py_DECREF(converted);
    if (!ok)
        Py_RETURN_FALSE;
    verified = 1;
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(header_doc,
"header(message, name) -> bytes | None\n"
"\n"
"The value of the last header ``name`` of ``message``, or None if it has none (or\n"
"one without a value). Only after checked() has said True.");

static PyObject *header(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2 || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "header(message, name: str)");
        return NULL;
    }
    PyObject *msg = args[0];
    if (!verified || !Py_IS_TYPE(msg, message_type)) {
        PyErr_SetString(PyExc_TypeError, "header: not a message checked() has verified");
        return NULL;
    }
    MessageHead *m = (MessageHead *)msg;
    const char *name = PyUnicode_AsUTF8(args[1]); /* kept with the str: no copy after */
    if (name == NULL)
        return NULL;
    if (m->c_headers != NULL) {
        const void *value;
        size_t size;
        if (header_get_last(m->c_headers, name, &value, &size) != 0 || value == NULL)
            Py_RETURN_NONE;
        return PyBytes_FromStringAndSize(value, (Py_ssize_t)size);
    }
    /* Converted already (headers() was called), or a record without headers. */
    if (m->headers == NULL || !PyList_Check(m->headers))
        Py_RETURN_NONE;
    for (Py_ssize_t i = PyList_GET_SIZE(m->headers) - 1; i >= 0; i--) {
        PyObject *pair = PyList_GET_ITEM(m->headers, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2)
            continue;
        PyObject *key = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
        if (PyUnicode_Check(key) && PyUnicode_Compare(key, args[1]) == 0) {
            if (!PyBytes_Check(value))
                Py_RETURN_NONE;
            Py_INCREF(value);
            return value;
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"checked", checked, METH_O, checked_doc},
    {"header", (PyCFunction)(void (*)(void))header, METH_FASTCALL, header_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "bridge.kafka._headers",
    .m_doc = "One header of a consumed record, read from librdkafka's copy.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__headers(void) {
    void *lib;
    PyTypeObject *type = cimpl_type("Message", &lib);
    if (type == NULL)
        return NULL;
    /* Without librdkafka's functions, checked() says False to everything. */
    message_type = load(lib) ? type : NULL;
    if (message_type == NULL)
        Py_DECREF(type);
    return PyModule_Create(&module);
}

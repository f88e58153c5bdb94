/* Records handed to librdkafka without confluent-kafka's per-record Python call
 * (bridge.kafka.producer).
 *
 * Producer.produce() parses its keyword arguments, turns each of a scan record's eleven
 * headers into C, and allocates a delivery state per record; that was half the CPU of
 * producing a record with its headers (bench/README.md). produce() here makes the same
 * rd_kafka_producev() call for each record of a list, into the rd_kafka_t that the
 * confluent-kafka Producer owns: the same topic, key, value and headers, partitioned and
 * timestamped by librdkafka as before.
 *
 * confluent-kafka has no public way to hand out its rd_kafka_t. Its handle struct starts
 * with the object header, the rd_kafka_t pointer and then the error_cb it was configured
 * with (confluent_kafka.h, Handle), and has since its first release. bind() reads the
 * pointer only after checking that layout on the object: it must be a Producer, the word
 * after the pointer must be the very error_cb object the producer was made with, and
 * librdkafka must call the handle a producer. Anything else and the caller keeps
 * Producer.produce(). librdkafka's functions are those confluent-kafka's extension module
 * calls, looked up through it: never another copy.
 *
 * A record this path cannot take as it is (an unexpected type, a full queue, any error
 * from librdkafka) stops the call there: the caller produces that one through
 * Producer.produce(), which raises as it always did, and goes on. No callback runs here:
 * librdkafka is never polled from this code, so confluent-kafka's callbacks keep running
 * only inside its own calls.
 */
#include "_cimpl.h"

#include <string.h>

/* librdkafka's public ABI (rdkafka.h), declared here so that building needs no headers. */
typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_headers_s rd_kafka_headers_t;
enum { VTYPE_END = 0, VTYPE_TOPIC = 1, VTYPE_VALUE = 4, VTYPE_KEY = 5, VTYPE_MSGFLAGS = 7,
       VTYPE_HEADERS = 10 };
#define MSG_F_COPY 0x2
#define RD_KAFKA_PRODUCER 0

static int (*producev)(rd_kafka_t *, ...);
static rd_kafka_headers_t *(*headers_new)(size_t);
static int (*header_add)(rd_kafka_headers_t *, const char *, ssize_t, const void *, ssize_t);
static void (*headers_destroy)(rd_kafka_headers_t *);
static int (*kafka_type)(const rd_kafka_t *);

/* The start of confluent-kafka's Handle. */
typedef struct {
    PyObject_HEAD
    rd_kafka_t *rk;
    PyObject *error_cb;
} HandleHead;

static PyTypeObject *producer_type; /* confluent_kafka.Producer */
static PyObject *s_topic, *s_key, *s_value, *s_headers;

/* librdkafka's functions as confluent-kafka's extension module resolves them (dlsym on its
 * handle searches it and the libraries it was linked with); 0 where that fails. */
static int load(void *lib) {
    if (lib == NULL)
        return 0;
    *(void **)&producev = dlsym(lib, "rd_kafka_producev");
    *(void **)&headers_new = dlsym(lib, "rd_kafka_headers_new");
    *(void **)&header_add = dlsym(lib, "rd_kafka_header_add");
    *(void **)&headers_destroy = dlsym(lib, "rd_kafka_headers_destroy");
    *(void **)&kafka_type = dlsym(lib, "rd_kafka_type");
    return producev && headers_new && header_add && headers_destroy && kafka_type;
}

PyDoc_STRVAR(bind_doc,
"bind(producer, error_cb) -> bool\n"
"\n"
"Whether produce() may take ``producer``: a confluent_kafka.Producer made with\n"
"``error_cb`` as its error_cb, whose handle has the layout this module reads.");

static PyObject *bind(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *producer, *error_cb;
    if (!PyArg_ParseTuple(args, "OO:bind", &producer, &error_cb))
        return NULL;
    if (producer_type == NULL || !PyObject_TypeCheck(producer, producer_type))
        Py_RETURN_FALSE;
    /* A Producer's basic size holds at least the two fields read. */
    if ((size_t)Py_TYPE(producer)->tp_basicsize < sizeof(HandleHead))
        Py_RETURN_FALSE;
    HandleHead *head = (HandleHead *)producer;
    if (head->error_cb != error_cb || head->rk == NULL)
        Py_RETURN_FALSE;
    if (kafka_type(head->rk) != RD_KAFKA_PRODUCER)
        Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

/* UTF-8 of a str, or a bytes object's own buffer. */
static const char *text(PyObject *obj, Py_ssize_t *size) {
    if (PyBytes_CheckExact(obj)) {
        *size = PyBytes_GET_SIZE(obj);
        return PyBytes_AS_STRING(obj);
    }
    if (PyUnicode_CheckExact(obj))
        return PyUnicode_AsUTF8AndSize(obj, size);
    return NULL;
}

/* The record's headers for librdkafka, or NULL (without a Python error set) when one is not
 * a (str, str | bytes | None) pair. */
static rd_kafka_headers_t *make_headers(PyObject *list) {
    Py_ssize_t count = PyList_GET_SIZE(list);
    rd_kafka_headers_t *headers = headers_new((size_t)count);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = PyList_GET_ITEM(list, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyUnicode_CheckExact(PyTuple_GET_ITEM(pair, 0)))
            goto refused;
        Py_ssize_t name_size, value_size = 0;
        const char *name = text(PyTuple_GET_ITEM(pair, 0), &name_size), *value = NULL;
        PyObject *value_obj = PyTuple_GET_ITEM(pair, 1);
        if (name == NULL || (value_obj != Py_None &&
                             (value = text(value_obj, &value_size)) == NULL))
            goto refused;
        if (header_add(headers, name, name_size, value, value_size))
            goto refused;
    }
    return headers;
refused:
    PyErr_Clear(); /* a str that is not UTF-8: Producer.produce() reports it */
    headers_destroy(headers);
    return NULL;
}

/* Hand one record to librdkafka: 0 when it took it. */
static int produce_one(rd_kafka_t *rk, PyObject *record) {
    int done = -1;
    PyObject *topic = PyObject_GetAttr(record, s_topic);
    PyObject *key = PyObject_GetAttr(record, s_key);
    PyObject *value = PyObject_GetAttr(record, s_value);
    PyObject *list = PyObject_GetAttr(record, s_headers);
    if (topic == NULL || key == NULL || value == NULL || list == NULL) {
        PyErr_Clear();
        goto out;
    }
    Py_ssize_t topic_size, key_size = 0;
    const char *topic_text = PyUnicode_CheckExact(topic) ? text(topic, &topic_size) : NULL;
    if (topic_text == NULL || !PyBytes_CheckExact(value) || !PyList_CheckExact(list) ||
        (key != Py_None && !PyBytes_CheckExact(key))) {
        PyErr_Clear();
        goto out;
    }
    const char *key_bytes = key == Py_None ? NULL : PyBytes_AS_STRING(key);
    if (key_bytes != NULL)
        key_size = PyBytes_GET_SIZE(key);
    rd_kafka_headers_t *headers = make_headers(list);
    if (headers == NULL)
        goto out;
    if (producev(rk, VTYPE_TOPIC, topic_text, VTYPE_MSGFLAGS, MSG_F_COPY,
                 VTYPE_VALUE, (void *)PyBytes_AS_STRING(value), (size_t)PyBytes_GET_SIZE(value),
                 VTYPE_KEY, (const void *)key_bytes, (size_t)key_size,
                 VTYPE_HEADERS, headers, VTYPE_END) != 0) {
        headers_destroy(headers); /* librdkafka owns them only once it took the record */
        goto out;
    }
    done = 0;
out:
    Py_XDECREF(topic);
    Py_XDECREF(key);
    Py_XDECREF(value);
    Py_XDECREF(list);
    return done;
}

PyDoc_STRVAR(produce_doc,
"produce(producer, records, start) -> int\n"
"\n"
"Hand ``records[start:]`` to a producer bind() accepted, in order; return the index of\n"
"the first record it did not take (len(records) when it took them all).");

static PyObject *produce(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *producer, *records;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "OO!n:produce", &producer, &PyList_Type, &records, &start))
        return NULL;
    Py_ssize_t i = start < 0 ? 0 : start;
    if (producer_type == NULL || !PyObject_TypeCheck(producer, producer_type))
        return PyLong_FromSsize_t(i);
    /* Read at each call: a closed producer has none, and takes nothing here. */
    rd_kafka_t *rk = ((HandleHead *)producer)->rk;
    if (rk != NULL) {
        for (; i < PyList_GET_SIZE(records); i++) {
            if (produce_one(rk, PyList_GET_ITEM(records, i)) != 0)
                break;
        }
    }
    return PyLong_FromSsize_t(i);
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS, bind_doc},
    {"produce", produce, METH_VARARGS, produce_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "bridge.kafka._produce", NULL, -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__produce(void) {
    if ((s_topic = PyUnicode_InternFromString("topic")) == NULL ||
        (s_key = PyUnicode_InternFromString("key")) == NULL ||
        (s_value = PyUnicode_InternFromString("value")) == NULL ||
        (s_headers = PyUnicode_InternFromString("headers")) == NULL)
        return NULL;
    void *lib;
    PyTypeObject *type = cimpl_type("Producer", &lib);
    if (type == NULL)
        return NULL;
    /* Without librdkafka's functions, bind() accepts nothing. */
    producer_type = load(lib) ? type : NULL;
    if (producer_type == NULL)
        Py_DECREF(type);
    return PyModule_Create(&module);
}

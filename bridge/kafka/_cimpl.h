/* What the modules that reach into confluent-kafka's extension module (cimpl) share: one of
 * its types, and a handle on its library through which dlsym finds the librdkafka it was
 * linked with, so that the functions called are cimpl's own, never another copy's.
 * (bridge/kafka/_produce.c, bridge/kafka/_headers.c)
 */
#ifndef BRIDGE_KAFKA_CIMPL_H
#define BRIDGE_KAFKA_CIMPL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>

/* cimpl's type ``name`` (a new reference), with *lib its library's handle (NULL when that
 * cannot be had: the caller then uses none of librdkafka's functions). NULL, with
 * ImportError set, when cimpl has no such type. */
static PyTypeObject *cimpl_type(const char *name, void **lib) {
    *lib = NULL;
    PyObject *cimpl = PyImport_ImportModule("confluent_kafka.cimpl");
    if (cimpl == NULL)
        return NULL;
    PyObject *type = PyObject_GetAttrString(cimpl, name);
    PyObject *file = PyObject_GetAttrString(cimpl, "__file__");
    Py_DECREF(cimpl);
    const char *path = file != NULL && PyUnicode_Check(file) ? PyUnicode_AsUTF8(file) : NULL;
    if (type == NULL || path == NULL || !PyType_Check(type)) {
        Py_XDECREF(type);
        Py_XDECREF(file);
        PyErr_Format(PyExc_ImportError, "confluent_kafka.cimpl has no %s type or file", name);
        return NULL;
    }
    *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    Py_DECREF(file);
    return (PyTypeObject *)type;
}

#endif

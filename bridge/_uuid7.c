/* A canonical UUIDv7 string as its 128-bit int, for the page decode of every scan
 * (bridge.uuid7.parse_uuid7_int). The rules are parse_uuid7's: 36 characters, hyphens at 8,
 * 13, 18 and 23, hex digits elsewhere, version 7, variant 10xx. Anything else gives None,
 * and the Python side raises with the precise reason.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static int hex_value(Py_UCS4 c) {
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F')
        return (int)(c - 'A' + 10);
    return -1;
}

PyDoc_STRVAR(parse_int_doc,
"parse_int(text) -> int | None\n"
"\n"
"The int of a canonical UUIDv7 (any case), or None when ``text`` is not one.");

static PyObject *parse_int(PyObject *module, PyObject *text) {
    (void)module;
    if (!PyUnicode_Check(text) || PyUnicode_GET_LENGTH(text) != 36)
        Py_RETURN_NONE;
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    unsigned char bytes[16];
    int nibbles = 0;
    for (Py_ssize_t i = 0; i < 36; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                Py_RETURN_NONE;
            continue;
        }
        int v = hex_value(c);
        if (v < 0)
            Py_RETURN_NONE;
        if (nibbles % 2 == 0)
            bytes[nibbles / 2] = (unsigned char)(v << 4);
        else
            bytes[nibbles / 2] |= (unsigned char)v;
        nibbles++;
    }
    /* Version in the high nibble of byte 6, variant in the top two bits of byte 8. */
    if ((bytes[6] >> 4) != 7 || (bytes[8] >> 6) != 2)
        Py_RETURN_NONE;
    return _PyLong_FromByteArray(bytes, 16, 0 /* big-endian */, 0 /* unsigned */);
}

static PyMethodDef methods[] = {
    {"parse_int", parse_int, METH_O, parse_int_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "bridge._uuid7",
    .m_doc = "A canonical UUIDv7 string as its int.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__uuid7(void) { return PyModule_Create(&module); }

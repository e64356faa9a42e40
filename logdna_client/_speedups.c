/*
 * A LogDNAHandler's handle for the common record, in C (see _handler.py).
 *
 * A leaf: it reads the record through the public C API (its __dict__, as
 * PyObject_GenericGetDict gives it), uses only objects the handler hands it
 * when it is built, and builds the entry bytes for the common record, which
 * is most of what the Python path costs in bytecode. Each job mirrors exactly
 * one Python function, named where it is done:
 *
 *   which records qualify, their text and meta: LogDNAHandler._deliver and
 *     LogDNAHandler._parts (and _line.LineBuilder.meta_json for meta);
 *   the entry's bytes: _line.LineBuilder.plain;
 *   queueing it: _buffer.Buffer.put_entry.
 *
 * Every other record, and any record for which something here fails, goes to
 * the Python LogDNAHandler.handle untouched, which decides and builds as it
 * always does (tests/test_speedups.py checks that both give the same bytes).
 *
 * Nothing here runs user code (only exact LogRecord instances, exact builtin
 * argument and meta types, the stdlib's own getMessage and our formatter), so
 * no re-entry guard is needed; nothing releases the GIL, so the buffer's
 * lock-free protocol holds as it does in Python (see _buffer.py). The module
 * declares that it needs the GIL, and _handler.py does not import it on
 * builds without one, nor on other Pythons than CPython.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <string.h>

/* What _handler.py expects of this module; a build left from another version
 * of the package (an editable install not rebuilt) is not used. */
#define SPEEDUPS_API 5

/* Attribute names: the stdlib's public ones and the buffer's lock-free protocol. */
static PyObject *s_filters, *s_formatter, *s_getMessage, *s_queued_bytes, *s_fast_limit,
    *s_entries, *s_append, *s_name, *s_msg, *s_args, *s_levelname, *s_exc_info, *s_exc_text,
    *s_stack_info, *s_created, *s_thread;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *handler, *slow, *queue, *buffer, *record_type, *get_message, *default_formatter;
    PyObject *skip_names, *sender_threads, *busy_threads, *context_var, *record_attrs, *meta_cache;
    PyObject *init_attrs, *standard_attrs, *safe_keys, *dumps, *escape, *pieces, *app_env, *level_json;
    Py_ssize_t plain_len, max_chars, max_entry, entry_overhead;
    Py_ssize_t lines;         /* entries built here and queued (tests read it) */
    PyObject *append;         /* buffer.entries.append, for append_of */
    PyObject *append_of;      /* the buffer that append belongs to */
} Handle;

/* Every object a Handle holds; its traverse and clear are written from this. */
#define HANDLE_OBJECTS(X)                                                                   \
    X(handler) X(slow) X(queue) X(buffer) X(record_type) X(get_message)                     \
    X(default_formatter) X(skip_names) X(sender_threads) X(busy_threads) X(context_var)     \
    X(record_attrs) X(meta_cache) X(init_attrs) X(standard_attrs) X(safe_keys) X(dumps) X(escape) X(pieces) X(app_env)  \
    X(level_json) X(append) X(append_of)

/* -- which records qualify: LogDNAHandler._deliver, _parts --------------------- */

/* Builtin types whose %-formatting and JSON run no user code. */
static int
is_scalar(PyObject *v)
{
    PyTypeObject *t = Py_TYPE(v);
    return t == &PyUnicode_Type || t == &PyLong_Type || t == &PyFloat_Type ||
           t == &PyBool_Type || v == Py_None;
}

/* 1 when the running thread may ship ``record`` here; 0: Python decides; -1 error. */
static int
may_ship(Handle *self, PyObject *attrs)
{
    PyObject *thread = PyDict_GetItemWithError(attrs, s_thread);
    PyObject *name = PyDict_GetItemWithError(attrs, s_name), *ident, *own;
    int found;
    if (thread == NULL || name == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    /* Made on a sender thread; with logging.logThreads off, the running one is it. */
    if (thread != Py_None && !PyLong_CheckExact(thread)) {
        return 0;
    }
    unsigned long made_on = thread == Py_None ? 0 : PyLong_AsUnsignedLong(thread);
    if (made_on == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;  /* not a thread ident: Python decides */
    }
    if (thread != Py_None && made_on == PyThread_get_thread_ident()) {
        ident = Py_NewRef(thread);  /* made on this thread: no new int */
    }
    else if ((ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident())) == NULL) {
        return -1;
    }
    found = PySet_Contains(self->sender_threads, thread == Py_None ? ident : thread);
    /* Inside a handler or processor of ours already: the nested path. */
    if (found == 0) {
        found = PySet_Contains(self->busy_threads, ident);
    }
    Py_DECREF(ident);
    if (found != 0) {
        return found < 0 ? -1 : 0;
    }
    /* A logger known not to be the library's own (LogDNAHandler._is_own). */
    if (!PyUnicode_CheckExact(name)) {
        return 0;
    }
    own = PyDict_GetItemWithError(self->skip_names, name);
    return own == Py_False ? 1 : (PyErr_Occurred() ? -1 : 0);
}

/* The record's text as the default formatter makes it, or NULL (maybe an error). */
static PyObject *
text_of(Handle *self, PyObject *handler, PyObject *record, PyObject *attrs)
{
    PyObject *v, *get_message;
    int ok;
    /* The handler's own filters (none) and formatter; the stdlib's getMessage. */
    v = PyObject_GetAttr(handler, s_filters);
    ok = v != NULL && PyList_CheckExact(v) && PyList_GET_SIZE(v) == 0;
    Py_XDECREF(v);
    if (!ok) {
        return NULL;
    }
    v = PyObject_GetAttr(handler, s_formatter);
    ok = v == self->default_formatter;
    Py_XDECREF(v);
    get_message = ok ? PyObject_GetAttr(self->record_type, s_getMessage) : NULL;
    ok = get_message == self->get_message;
    Py_XDECREF(get_message);
    if (!ok) {
        return NULL;
    }
    /* No traceback or stack to add: the message alone. */
    PyObject *keys[3] = {s_exc_info, s_exc_text, s_stack_info};
    for (int i = 0; i < 3; i++) {
        v = PyDict_GetItemWithError(attrs, keys[i]);
        if (v != Py_None) {
            return NULL;
        }
    }
    PyObject *msg = PyDict_GetItemWithError(attrs, s_msg);
    PyObject *args = PyDict_GetItemWithError(attrs, s_args);
    if (msg == NULL || args == NULL || !PyUnicode_CheckExact(msg)) {
        return NULL;
    }
    if (args == Py_None || (PyTuple_CheckExact(args) && PyTuple_GET_SIZE(args) == 0)) {
        return Py_NewRef(msg);  /* msg % args if args else msg */
    }
    if (!PyTuple_CheckExact(args)) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args); i++) {
        if (!is_scalar(PyTuple_GET_ITEM(args, i))) {
            return NULL;
        }
    }
    v = PyUnicode_Format(msg, args);  /* a failure is reported by the Python path */
    if (v != NULL && !PyUnicode_CheckExact(v)) {
        Py_CLEAR(v);
    }
    return v;
}

/* The record's meta as JSON (LineBuilder.meta_json of _parts's meta), for
 * flat meta whose keys the redactor knows are safe; Py_None for no meta; NULL
 * (maybe an error) to leave the record to Python. */
static PyObject *
meta_json(Handle *self, PyObject *attrs)
{
    Py_ssize_t size = PyDict_GET_SIZE(attrs), pos = 0, i = 0;
    PyObject *meta, *key, *value, *json = NULL;
    if (size < self->plain_len) {
        return NULL;
    }
    if (size == self->plain_len && self->meta_cache != Py_None) {
        /* The one record attribute alone: its JSON as _parts keeps it. */
        value = PyDict_GetItemWithError(attrs, PyTuple_GET_ITEM(self->record_attrs, 0));
        if (value == NULL || !PyUnicode_CheckExact(value)) {
            return NULL;
        }
        json = PyDict_GetItemWithError(self->meta_cache, value);  /* (meta, its JSON) */
        if (json == NULL || !PyTuple_CheckExact(json) || PyTuple_GET_SIZE(json) != 2) {
            return NULL;
        }
        json = PyTuple_GET_ITEM(json, 1);
        return PyBytes_CheckExact(json) ? Py_NewRef(json) : NULL;
    }
    meta = PyDict_New();
    if (meta == NULL) {
        return NULL;
    }
    for (i = 0; i < PyTuple_GET_SIZE(self->record_attrs); i++) {
        key = PyTuple_GET_ITEM(self->record_attrs, i);
        value = PyDict_GetItemWithError(attrs, key);
        if (value != NULL && PyDict_SetItem(meta, key, value) != 0) {
            goto done;
        }
        if (value == NULL && PyErr_Occurred()) {
            goto done;
        }
    }
    /* Extras: what follows the attributes LogRecord.__init__ sets (_extras). */
    for (i = 0; size > self->plain_len && PyDict_Next(attrs, &pos, &key, &value); i++) {
        int found;
        if (i < self->plain_len) {
            continue;
        }
        /* One __init__ sets, moved here by a filter: extras may sit before (Python). */
        if (!PyUnicode_CheckExact(key) || (found = PySet_Contains(self->init_attrs, key)) != 0) {
            goto done;
        }
        /* message, asctime: a formatter ran first; never meta. */
        found = PySet_Contains(self->standard_attrs, key);
        if (found < 0 || (found == 0 && PyDict_SetItem(meta, key, value) != 0)) {
            goto done;
        }
    }
    if (PyDict_GET_SIZE(meta) == 0) {
        json = Py_NewRef(Py_None);
        goto done;
    }
    /* No redaction walk needed: scalar values, keys the redactor found safe. */
    pos = 0;
    while (PyDict_Next(meta, &pos, &key, &value)) {
        if (!is_scalar(value) ||
            (self->safe_keys != Py_None && PySet_Contains(self->safe_keys, key) != 1)) {
            goto done;
        }
    }
    json = PyObject_CallOneArg(self->dumps, meta);
    if (json != NULL && !PyBytes_CheckExact(json)) {
        Py_CLEAR(json);
    }
done:
    Py_DECREF(meta);
    return json;
}

/* -- the entry's bytes: LineBuilder.plain ---------------------------------------- */

/* Appends n bytes at *out. */
static void
put(char **out, const char *data, Py_ssize_t n)
{
    memcpy(*out, data, n);
    *out += n;
}

/* ``value`` in decimal at ``out`` (at least 20 bytes); returns the length. */
static int
write_int(long long value, char *out)
{
    char tmp[24];
    int n = 0, len = 0;
    unsigned long long v = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (value < 0) {
        out[len++] = '-';
    }
    while (n) {
        out[len++] = tmp[--n];
    }
    return len;
}

/* ENTRY_HEAD text ENTRY_TIMESTAMP ms ENTRY_LEVEL level app_env [ENTRY_META meta] ENTRY_END,
 * text as JSON; NULL (maybe an error) where plain() would not make it. */
static PyObject *
entry_of(Handle *self, PyObject *text, PyObject *level, double created, PyObject *meta)
{
    PyObject *escaped = NULL, *entry = NULL, *level_json;
    const char *data;
    Py_ssize_t n_text = PyUnicode_GET_LENGTH(text), n, i;
    char digits[32], *out;
    int n_digits;
    double millis = created * 1000.0;
    /* entry(): texts of 1..plain_max_chars characters take plain(). */
    if (n_text == 0 || n_text > self->max_chars) {
        return NULL;
    }
    /* int(created * 1000), where that fits; NaN and infinities go to Python. */
    if (!(millis > -9.2e18 && millis < 9.2e18)) {
        return NULL;
    }
    n_digits = write_int((long long)millis, digits);
    level_json = PyDict_GetItemWithError(self->level_json, level);
    if (level_json == NULL || !PyBytes_CheckExact(level_json)) {
        return NULL;  /* plain() makes and caches it */
    }
    data = (const char *)PyUnicode_DATA(text);
    for (i = 0; PyUnicode_IS_ASCII(text) && i < n_text; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c < 0x20 || c == '"' || c == '\\') {
            break;
        }
    }
    if (PyUnicode_IS_ASCII(text) && i == n_text) {
        n = n_text;  /* nothing to escape: the text itself, quoted below */
    }
    else {
        /* _escape(text).encode(), quotes included; a lone surrogate fails here. */
        escaped = PyObject_CallOneArg(self->escape, text);
        if (escaped == NULL || !PyUnicode_CheckExact(escaped) ||
            (data = PyUnicode_AsUTF8AndSize(escaped, &n)) == NULL) {
            Py_XDECREF(escaped);
            return NULL;
        }
    }
    PyObject **piece = &PyTuple_GET_ITEM(self->pieces, 0);  /* ENTRY_PIECES */
    Py_ssize_t total = PyBytes_GET_SIZE(piece[0]) + n + (escaped ? 0 : 2) +
                       PyBytes_GET_SIZE(piece[1]) + n_digits + PyBytes_GET_SIZE(piece[2]) +
                       PyBytes_GET_SIZE(level_json) + PyBytes_GET_SIZE(self->app_env) +
                       (meta != NULL ? PyBytes_GET_SIZE(piece[3]) + PyBytes_GET_SIZE(meta) : 0) +
                       PyBytes_GET_SIZE(piece[4]);
    /* plain() leaves longer lines with meta to encode(), which cuts them. */
    if (total <= self->max_entry) {
        entry = PyBytes_FromStringAndSize(NULL, total);
    }
    if (entry != NULL) {
        out = PyBytes_AS_STRING(entry);
        put(&out, PyBytes_AS_STRING(piece[0]), PyBytes_GET_SIZE(piece[0]));
        if (escaped == NULL) {
            *out++ = '"';
            put(&out, data, n);
            *out++ = '"';
        }
        else {
            put(&out, data, n);
        }
        put(&out, PyBytes_AS_STRING(piece[1]), PyBytes_GET_SIZE(piece[1]));
        put(&out, digits, n_digits);
        put(&out, PyBytes_AS_STRING(piece[2]), PyBytes_GET_SIZE(piece[2]));
        put(&out, PyBytes_AS_STRING(level_json), PyBytes_GET_SIZE(level_json));
        put(&out, PyBytes_AS_STRING(self->app_env), PyBytes_GET_SIZE(self->app_env));
        if (meta != NULL) {
            put(&out, PyBytes_AS_STRING(piece[3]), PyBytes_GET_SIZE(piece[3]));
            put(&out, PyBytes_AS_STRING(meta), PyBytes_GET_SIZE(meta));
        }
        put(&out, PyBytes_AS_STRING(piece[4]), PyBytes_GET_SIZE(piece[4]));
    }
    Py_XDECREF(escaped);
    return entry;
}

/* The common record's entry, or NULL (maybe an error): Python builds that one. */
static PyObject *
build(Handle *self, PyObject *record)
{
    PyObject *attrs, *text = NULL, *meta = NULL, *entry = NULL, *context = NULL, *v;
    int ok;
    if (Py_TYPE(record) != (PyTypeObject *)self->record_type ||
        Py_TYPE(record)->tp_getattro != PyObject_GenericGetAttr) {
        return NULL;
    }
    attrs = PyObject_GenericGetDict(record, NULL);
    if (attrs == NULL || !PyDict_CheckExact(attrs) || (ok = may_ship(self, attrs)) != 1) {
        goto done;
    }
    /* No request context bound (an empty one is the default mapping). */
    if (PyContextVar_Get(self->context_var, NULL, &context) != 0 || context == NULL ||
        !PyDict_CheckExact(context) || PyDict_GET_SIZE(context) != 0) {
        goto done;
    }
    /* Meta first: it allocates (which may run a finalizer), and the values read
       from attrs below are borrowed. */
    meta = meta_json(self, attrs);
    if (meta == NULL || (text = text_of(self, self->handler, record, attrs)) == NULL) {
        goto done;
    }
    v = PyDict_GetItemWithError(attrs, s_levelname);
    PyObject *created = PyDict_GetItemWithError(attrs, s_created);
    if (v != NULL && PyUnicode_CheckExact(v) && created != NULL && PyFloat_CheckExact(created)) {
        entry = entry_of(self, text, v, PyFloat_AS_DOUBLE(created), meta == Py_None ? NULL : meta);
    }
done:
    Py_XDECREF(attrs);
    Py_XDECREF(context);
    Py_XDECREF(text);
    Py_XDECREF(meta);
    return entry;
}

/* -- queueing it: Buffer.put_entry's lock-free protocol ------------------------- */

/* 1 queued; 0 the locked path must queue it; -1 error (nothing queued). */
static int
put_entry(Handle *self, PyObject *entry, Py_ssize_t size)
{
    PyObject *buffer = Py_NewRef(self->buffer), *queued = NULL, *limit = NULL, *total;
    long long q, lim;
    int result = -1;
    if (self->append_of != buffer) {
        PyObject *entries = PyObject_GetAttr(buffer, s_entries);
        PyObject *append = entries == NULL ? NULL : PyObject_GetAttr(entries, s_append);
        Py_XDECREF(entries);
        if (append == NULL) {
            goto done;
        }
        Py_XSETREF(self->append, append);
        Py_XSETREF(self->append_of, Py_NewRef(buffer));
    }
    queued = PyObject_GetAttr(buffer, s_queued_bytes);
    limit = queued == NULL ? NULL : PyObject_GetAttr(buffer, s_fast_limit);
    if (limit == NULL || !PyLong_CheckExact(queued) || !PyLong_CheckExact(limit)) {
        goto done;
    }
    q = PyLong_AsLongLong(queued);
    lim = PyLong_AsLongLong(limit);
    if (PyErr_Occurred()) {
        goto done;
    }
    if (q + size > lim) {
        result = 0;
        goto done;
    }
    /* Counted before the append: take() must never see a line uncounted. */
    total = PyLong_FromLongLong(q + size);
    if (total == NULL || PyObject_SetAttr(buffer, s_queued_bytes, total) != 0) {
        Py_XDECREF(total);
        goto done;
    }
    Py_DECREF(total);
    PyObject *r = PyObject_CallOneArg(self->append, entry);
    if (r == NULL) {
        /* Not queued after all: take the count back (the caller goes the Python way). */
        PyErr_Clear();
        if (PyObject_SetAttr(buffer, s_queued_bytes, queued) != 0) {
            PyErr_Clear();
        }
        goto done;
    }
    Py_DECREF(r);
    result = 1;
done:
    Py_XDECREF(queued);
    Py_XDECREF(limit);
    Py_DECREF(buffer);
    return result;
}

/* -- the Handle: handler.handle(record) ------------------------------------------ */

static PyObject *
handle_call(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Handle *self = (Handle *)Py_NewRef(op);  /* owned: a finalizer may drop handler.handle */
    PyObject *entry = NULL, *result = NULL;
    if (PyVectorcall_NARGS(nargsf) == 1 && kwnames == NULL) {
        entry = build(self, args[0]);
    }
    if (entry != NULL) {
        Py_ssize_t size = PyBytes_GET_SIZE(entry) + self->entry_overhead;
        int queued = put_entry(self, entry, size);
        if (queued >= 0) {
            self->lines++;
        }
        if (queued == 1) {
            result = Py_NewRef(Py_True);
        }
        else if (queued == 0) {
            /* Full, closed, due to wake the sender, or not started: the Python
               code queues it the locked way (LogDNAHandler._queue_built). */
            PyObject *call[3] = {self->handler, args[0], entry};
            result = PyObject_Vectorcall(self->queue, call, 3, NULL);
        }
    }
    if (result == NULL) {
        /* Not the common record, or something failed before the line was queued:
           the Python handle builds it (again) and deals with what went wrong. */
        PyErr_Clear();
        PyObject *bound = PyMethod_New(self->slow, self->handler);
        if (bound != NULL) {
            result = PyObject_Vectorcall(bound, args, nargsf, kwnames);
            Py_DECREF(bound);
        }
    }
    Py_XDECREF(entry);
    Py_DECREF(self);
    return result;
}

static PyTypeObject HandleType;

static PyObject *
handle_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {
        "handler", "slow", "queue", "buffer", "record_type", "get_message", "default_formatter",
        "skip_names", "sender_threads", "busy_threads", "context_var", "record_attrs",
        "meta_cache", "init_attrs", "standard_attrs", "plain_len", "safe_keys", "dumps", "escape", "pieces", "app_env",
        "level_json", "max_chars", "max_entry", "entry_overhead", NULL,
    };
    Handle *h = (Handle *)type->tp_alloc(type, 0);
    Py_ssize_t i;
    if (h == NULL) {
        return NULL;
    }
    h->vectorcall = handle_call;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, "$OOOOO!OOO!O!O!O!O!OO!O!nOOOO!O!O!nnn", kwlist, &h->handler, &h->slow,
            &h->queue, &h->buffer, &PyType_Type, &h->record_type, &h->get_message,
            &h->default_formatter, &PyDict_Type, &h->skip_names, &PySet_Type, &h->sender_threads,
            &PySet_Type, &h->busy_threads, &PyContextVar_Type, &h->context_var, &PyTuple_Type,
            &h->record_attrs, &h->meta_cache, &PyFrozenSet_Type, &h->init_attrs, &PyFrozenSet_Type,
            &h->standard_attrs, &h->plain_len, &h->safe_keys,
            &h->dumps, &h->escape, &PyTuple_Type, &h->pieces, &PyBytes_Type, &h->app_env,
            &PyDict_Type, &h->level_json, &h->max_chars, &h->max_entry, &h->entry_overhead)) {
        h->vectorcall = NULL;
        memset(&h->handler, 0, offsetof(Handle, plain_len) - offsetof(Handle, handler));
        Py_DECREF(h);
        return NULL;
    }
#define OWN(name) Py_XINCREF(h->name);
    HANDLE_OBJECTS(OWN)
#undef OWN
    if (h->meta_cache != Py_None &&
        (!PyDict_CheckExact(h->meta_cache) || PyTuple_GET_SIZE(h->record_attrs) != 1)) {
        PyErr_SetString(PyExc_TypeError, "meta_cache must be a dict (one record attribute)");
        goto fail;
    }
    if (h->safe_keys != Py_None && !PySet_CheckExact(h->safe_keys)) {
        PyErr_SetString(PyExc_TypeError, "safe_keys must be a set or None");
        goto fail;
    }
    if (PyTuple_GET_SIZE(h->pieces) != 5) {
        PyErr_SetString(PyExc_ValueError, "pieces must be the five ENTRY_PIECES");
        goto fail;
    }
    for (i = 0; i < 5; i++) {
        if (!PyBytes_CheckExact(PyTuple_GET_ITEM(h->pieces, i))) {
            PyErr_SetString(PyExc_TypeError, "pieces must be bytes");
            goto fail;
        }
    }
    for (i = 0; i < PyTuple_GET_SIZE(h->record_attrs); i++) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(h->record_attrs, i))) {
            PyErr_SetString(PyExc_TypeError, "record_attrs must be names");
            goto fail;
        }
    }
    return (PyObject *)h;
fail:
    Py_DECREF(h);
    return NULL;
}

/* The objects a Handle holds, for the garbage collector: the handler holds its
   Handle (as handler.handle), which holds the handler. */
static int
handle_traverse(Handle *self, visitproc visit, void *arg)
{
#define VISIT(name) Py_VISIT(self->name);
    HANDLE_OBJECTS(VISIT)
#undef VISIT
    return 0;
}

static int
handle_clear(Handle *self)
{
#define CLEAR(name) Py_CLEAR(self->name);
    HANDLE_OBJECTS(CLEAR)
#undef CLEAR
    return 0;
}

static void
handle_dealloc(Handle *self)
{
    PyObject_GC_UnTrack(self);
    handle_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
handle_get_buffer(Handle *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->buffer);
}

/* The Python code hands over a forked child's new buffer (_queue_built). */
static int
handle_set_buffer(Handle *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "buffer cannot be deleted");
        return -1;
    }
    Py_SETREF(self->buffer, Py_NewRef(value));
    return 0;
}

static PyObject *
handle_get_lines(Handle *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->lines);
}

static PyGetSetDef handle_getset[] = {
    {"buffer", (getter)handle_get_buffer, (setter)handle_set_buffer,
     "The buffer entries are queued in (Buffer.put_entry's protocol).", NULL},
    {"lines", (getter)handle_get_lines, NULL, "Entries built here and queued.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject HandleType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "logdna_client._speedups.Handle",
    .tp_doc = "handle(record) for one LogDNAHandler: its common record in C (see _handler.py).",
    .tp_basicsize = sizeof(Handle),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = handle_new,
    .tp_dealloc = (destructor)handle_dealloc,
    .tp_traverse = (traverseproc)handle_traverse,
    .tp_clear = (inquiry)handle_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Handle, vectorcall),
    .tp_getset = handle_getset,
};

/* -- the module: multi-phase initialisation ------------------------------------- */

static int
speedups_exec(PyObject *module)
{
    /* Process-wide and immortal once made: a second load of the module reuses them. */
    struct { PyObject **var; const char *text; } names[] = {
        {&s_filters, "filters"}, {&s_formatter, "formatter"}, {&s_getMessage, "getMessage"},
        {&s_queued_bytes, "queued_bytes"}, {&s_fast_limit, "fast_limit"},
        {&s_entries, "entries"}, {&s_append, "append"}, {&s_name, "name"}, {&s_msg, "msg"},
        {&s_args, "args"}, {&s_levelname, "levelname"}, {&s_exc_info, "exc_info"},
        {&s_exc_text, "exc_text"}, {&s_stack_info, "stack_info"}, {&s_created, "created"},
        {&s_thread, "thread"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (*names[i].var == NULL &&
            (*names[i].var = PyUnicode_InternFromString(names[i].text)) == NULL) {
            return -1;
        }
    }
    if (PyType_Ready(&HandleType) < 0 ||
        PyModule_AddIntConstant(module, "API", SPEEDUPS_API) < 0 ||
        PyModule_AddObjectRef(module, "Handle", (PyObject *)&HandleType) < 0) {
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, speedups_exec},
#ifdef Py_mod_multiple_interpreters
    /* A static type and process-wide names: one interpreter only. */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_mod_gil
    /* The lock-free put relies on the GIL (see _buffer.py). */
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "logdna_client._speedups",
    .m_doc = "LogDNAHandler.handle for the common record, in C; optional (see _handler.py).",
    .m_size = 0,
    .m_slots = speedups_slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}

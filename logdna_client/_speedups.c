/*
 * LogDNAHandler.handle for the common record, in C.
 *
 * The Python method (LogDNAHandler.handle in _handler.py, reachable here as
 * the Handle's __wrapped__) is the reference. It builds the most common records
 * inline: a str message formatted by %, no traceback, no filters, no request
 * context, the default formatter, with or without extra= fields that need no
 * redaction walk. This module does the same work for the same records without
 * running bytecode, which is most of what the Python version costs. Every branch
 * here either produces the bytes the Python code produces or hands the record
 * to the Python method untouched, which then decides and builds as it always
 * does (tests/test_speedups.py checks both agree).
 *
 * Nothing here runs user code (only records of the exact LogRecord type, only
 * exact builtin argument and extra types are formatted), so no re-entry guard
 * is needed; nothing releases the GIL, so the buffer's lock-free protocol holds
 * as it does in Python (see _buffer.py). Where an allocation may run the garbage
 * collector (and so a finalizer), the objects used across it are owned.
 *
 * The module is optional: where it was not built (no compiler at install), on
 * builds without a GIL, or with LOGDNA_CLIENT_PURE_PYTHON set, the handler runs
 * the Python code alone.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <structmember.h>
#include <string.h>

/* What _handler.py expects of this module; a build left from another version
 * of the package (an editable install not rebuilt) is not used. */
#define SPEEDUPS_API 5

/* The record attributes the common path reads. */
enum {
    F_NAME,
    F_MSG,
    F_ARGS,
    F_LEVELNAME,
    F_EXC_INFO,
    F_EXC_TEXT,
    F_STACK_INFO,
    F_CREATED,
    F_THREAD,
    N_FIELDS
};
static const char *const field_text[N_FIELDS] = {
    "name", "msg", "args", "levelname", "exc_info", "exc_text", "stack_info", "created", "thread",
};
static PyObject *field_names[N_FIELDS];

/* A LogRecord refers to about 20 objects; more than this is never a plain one. */
#define MAX_REFERENTS 64

static PyObject *s_filters, *s_formatter, *s_last_name, *s_in_use, *s_buffer;
static PyObject *s_queued_bytes, *s_fast_limit, *s_entries, *s_append, *s_fast;

/* -- what the garbage collector sees a record refer to ------------------------ */

typedef struct {
    Py_ssize_t n;
    PyObject *items[MAX_REFERENTS];
} Referents;

static int
collect_visit(PyObject *obj, void *arg)
{
    Referents *r = (Referents *)arg;
    if (r->n < MAX_REFERENTS) {
        r->items[r->n] = obj;
    }
    r->n++;
    return 0;
}

/* Fills ``r`` with what ``obj``'s tp_traverse visits (borrowed), in order.
 *
 * For an object whose attribute dict has not been built, that is each attribute
 * value in a fixed order (the type's shared keys), then the type. A record made
 * without extra= has exactly as many as a fresh one; any added attribute adds
 * one, and extras added through ``__dict__`` (as makeRecord does) leave only the
 * dict and the type. So the count tells a plain record without building its
 * dict, which ``len(record.__dict__)`` would (on 3.11+), and the values are its
 * attributes without a lookup each. */
static int
collect_referents(PyObject *obj, Referents *r)
{
    traverseproc traverse = Py_TYPE(obj)->tp_traverse;
    r->n = 0;
    if (traverse == NULL || !PyObject_IS_GC(obj)) {
        return -1;
    }
    return traverse(obj, collect_visit, r);
}

static PyObject *
referents(PyObject *Py_UNUSED(module), PyObject *obj)
{
    Referents r;
    if (collect_referents(obj, &r) != 0) {
        return PyLong_FromLong(-1);
    }
    return PyLong_FromSsize_t(r.n);
}

/* -- per-handler state -------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *record_type;   /* logging.LogRecord: only exact instances go fast */
    PyObject *client_dict;   /* the Client's __dict__: its _buffer (replaced after fork) */
    PyObject *stamps;        /* handler._stamps: level -> (low, high, rest) */
    PyObject *meta_stamps;   /* handler._meta_stamps: the same for lines with meta */
    PyObject *dumps;         /* orjson.dumps */
    PyObject *safe_keys;     /* meta keys the redactor found safe (a live set), or None */
    PyObject *standard_attrs;  /* STANDARD_RECORD_ATTRS: never meta */
    PyObject *init_attrs;    /* the ones LogRecord.__init__ sets (the rest: a formatter's) */
    Py_ssize_t max_depth;    /* lists this deep are cut: _redact.MAX_DEPTH */
    int text_triggers;       /* the default credential patterns run: see needs_redaction */
    PyObject *redact_text;   /* Redactor.text_triggered: text with a trigger, redacted */
    PyObject *secret_cache;  /* Redactor's key -> is-a-secret answers (a live dict) */
    PyObject *default_formatter;
    PyObject *context_dict;  /* _context's module dict: in_use */
    PyObject *context_var;   /* the request context's ContextVar, read once in_use */
    PyObject *sender_threads;
    PyObject *busy_threads;
    PyObject *escape;        /* the JSON string escaper */
    PyObject *line_head;     /* LINE_HEAD, ASCII */
    PyObject *queue;         /* LogDNAHandler._queue: the locked put, in Python */
    Py_ssize_t inline_max;   /* handler._inline_max */
    Py_ssize_t entry_overhead;
    Py_ssize_t plain_referents;  /* collect_referents() count of a plain record */
    Py_ssize_t plain_len;        /* len(__dict__) of a plain record */
    Py_ssize_t index[N_FIELDS];  /* where each field is among a plain record's referents */
    Py_ssize_t lines;            /* lines built here and handed to the buffer (tests read it) */
    /* The buffer seen last, its dict and entries.append: one lookup per buffer. */
    PyObject *buffer;
    PyObject *buffer_dict;
    PyObject *append;
} State;

static PyTypeObject StateType;

/* Every object a State holds: its traverse and clear are written from this. */
#define STATE_OBJECTS(X)                                                                \
    X(record_type) X(client_dict) X(stamps) X(meta_stamps) X(dumps) X(safe_keys)        \
    X(standard_attrs) X(init_attrs) X(default_formatter) X(context_dict) X(context_var) \
    X(sender_threads) X(busy_threads) X(escape) X(line_head) X(queue) X(buffer)         \
    X(buffer_dict) X(append) X(redact_text) X(secret_cache)

static int
state_traverse(State *self, visitproc visit, void *arg)
{
#define VISIT_FIELD(name) Py_VISIT(self->name);
    STATE_OBJECTS(VISIT_FIELD)
#undef VISIT_FIELD
    return 0;
}

static int
state_clear(State *self)
{
#define CLEAR_FIELD(name) Py_CLEAR(self->name);
    STATE_OBJECTS(CLEAR_FIELD)
#undef CLEAR_FIELD
    return 0;
}

static void
state_dealloc(State *self)
{
    PyObject_GC_UnTrack(self);
    state_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Where each field sits among a plain record's referents: set each on ``probe``
 * (a fresh record) to an object of its own and look for it. */
static int
calibrate(State *self, PyObject *probe)
{
    PyObject *marks[N_FIELDS] = {NULL};
    Referents r;
    int i, ok = -1;
    for (i = 0; i < N_FIELDS; i++) {
        marks[i] = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
        if (marks[i] == NULL || PyObject_SetAttr(probe, field_names[i], marks[i]) != 0) {
            goto done;
        }
    }
    if (collect_referents(probe, &r) != 0 || r.n != self->plain_referents) {
        PyErr_SetString(PyExc_RuntimeError, "records cannot be told apart by their referents");
        goto done;
    }
    for (i = 0; i < N_FIELDS; i++) {
        Py_ssize_t j;
        self->index[i] = -1;
        for (j = 0; j < r.n; j++) {
            if (r.items[j] == marks[i]) {
                self->index[i] = j;
            }
        }
        if (self->index[i] < 0) {
            PyErr_Format(PyExc_RuntimeError, "record attribute %s not found", field_text[i]);
            goto done;
        }
    }
    ok = 0;
done:
    for (i = 0; i < N_FIELDS; i++) {
        Py_XDECREF(marks[i]);
    }
    return ok;
}

static PyObject *
state_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {
        "record_type", "probe", "client", "stamps", "meta_stamps", "dumps", "safe_keys",
        "standard_attrs", "init_attrs", "max_depth", "default_formatter", "context", "context_var",
        "sender_threads", "busy_threads", "escape", "line_head", "queue", "inline_max",
        "entry_overhead", "plain_len", "by_referents", "redact_text", "secret_cache", NULL,
    };
    PyObject *record_type, *probe, *client, *stamps, *default_formatter, *context, *context_var;
    PyObject *meta_stamps, *dumps, *safe_keys, *standard_attrs, *init_attrs;
    Py_ssize_t max_depth;
    PyObject *sender_threads, *busy_threads, *escape, *line_head, *queue;
    Py_ssize_t inline_max, entry_overhead, plain_len;
    int by_referents;
    PyObject *redact_text, *secret_cache;
    Referents r;
    State *self;

    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, "$O!OOO!O!OOO!O!nOO!O!O!O!OUOnnnpOO!", kwlist, &PyType_Type, &record_type,
            &probe, &client, &PyDict_Type, &stamps, &PyDict_Type, &meta_stamps, &dumps,
            &safe_keys, &PyFrozenSet_Type, &standard_attrs, &PyFrozenSet_Type, &init_attrs,
            &max_depth, &default_formatter, &PyModule_Type, &context, &PyContextVar_Type, &context_var,
            &PySet_Type, &sender_threads, &PySet_Type, &busy_threads, &escape, &line_head,
            &queue, &inline_max, &entry_overhead, &plain_len, &by_referents, &redact_text, &PyDict_Type, &secret_cache)) {
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(line_head)) {
        PyErr_SetString(PyExc_ValueError, "line_head must be ASCII");
        return NULL;
    }
    if (safe_keys != Py_None && !PySet_CheckExact(safe_keys)) {
        PyErr_SetString(PyExc_TypeError, "safe_keys must be a set or None");
        return NULL;
    }
    if ((PyObject *)Py_TYPE(probe) != record_type) {
        PyErr_SetString(PyExc_TypeError, "probe must be a fresh record_type instance");
        return NULL;
    }
    if (by_referents &&
        (collect_referents(probe, &r) != 0 || r.n < 2 || r.n > MAX_REFERENTS)) {
        PyErr_SetString(PyExc_RuntimeError, "records cannot be told apart by their referents");
        return NULL;
    }
    self = (State *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    /* Without by_referents (Python 3.10: a record's dict always exists, and is
       all it refers to) every record takes the dict route. */
    self->plain_referents = by_referents ? r.n : -1;
    self->client_dict = PyObject_GenericGetDict(client, NULL);
    self->context_dict = Py_XNewRef(PyModule_GetDict(context));
    if (self->client_dict == NULL || self->context_dict == NULL ||
        (by_referents && calibrate(self, probe) != 0)) {
        Py_DECREF(self);
        return NULL;
    }
    self->record_type = Py_NewRef(record_type);
    self->context_var = Py_NewRef(context_var);
    self->stamps = Py_NewRef(stamps);
    self->meta_stamps = Py_NewRef(meta_stamps);
    self->dumps = Py_NewRef(dumps);
    self->safe_keys = Py_NewRef(safe_keys);
    self->standard_attrs = Py_NewRef(standard_attrs);
    self->init_attrs = Py_NewRef(init_attrs);
    self->max_depth = max_depth;
    /* None: no text patterns that this path can serve (or none at all). */
    self->text_triggers = redact_text != Py_None;
    self->redact_text = Py_NewRef(redact_text);
    self->secret_cache = Py_NewRef(secret_cache);
    self->default_formatter = Py_NewRef(default_formatter);
    self->sender_threads = Py_NewRef(sender_threads);
    self->busy_threads = Py_NewRef(busy_threads);
    self->escape = Py_NewRef(escape);
    self->line_head = Py_NewRef(line_head);
    self->queue = Py_NewRef(queue);
    self->inline_max = inline_max;
    self->entry_overhead = entry_overhead;
    self->plain_len = plain_len;
    return (PyObject *)self;
}

static PyMemberDef state_members[] = {
    {"lines", T_PYSSIZET, offsetof(State, lines), READONLY,
     "Lines built in C and handed to the buffer."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject StateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "logdna_client._speedups.State",
    .tp_basicsize = sizeof(State),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "What the C handle needs of one LogDNAHandler (see _handler.py).",
    .tp_new = state_new,
    .tp_dealloc = (destructor)state_dealloc,
    .tp_traverse = (traverseproc)state_traverse,
    .tp_clear = (inquiry)state_clear,
    .tp_members = state_members,
};

/* -- the common record ---------------------------------------------------------- */

/* Builtin types whose %-formatting runs no user code. */
static int
is_plain_arg(PyObject *arg)
{
    PyTypeObject *t = Py_TYPE(arg);
    return t == &PyUnicode_Type || t == &PyLong_Type || t == &PyFloat_Type ||
           t == &PyBool_Type || arg == Py_None;
}

/* Whether JSON escapes this ASCII character. */
static int
escaped_in_json(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\';
}

/* Whether ASCII ``text`` has a character JSON must escape. */
static int
needs_escape(const unsigned char *text, Py_ssize_t n)
{
    Py_ssize_t i;
    for (i = 0; i < n; i++) {
        if (escaped_in_json(text[i])) {
            return 1;
        }
    }
    return 0;
}

/* The prefixes of AWS access key ids after their "A" (_redact's aws_key and
 * TRIGGER): text holding one goes to the Python redactor. */
static const char aws_prefixes[][3] = {
    {'K', 'I', 'A'}, {'S', 'I', 'A'}, {'B', 'I', 'A'}, {'C', 'C', 'A'}, {'G', 'P', 'A'},
    {'I', 'D', 'A'}, {'R', 'O', 'A'}, {'I', 'P', 'A'}, {'N', 'P', 'A'}, {'N', 'V', 'A'},
    {'P', 'K', 'A'},
};

/* Whether a key could stand at ``text[at]`` (a ':' or '='), read back as the
 * key=value pattern reads it (_redact._KEY_BEFORE_REVERSED: up to 3 spaces or
 * tabs, a quote, then 1 to 64 of [A-Za-z0-9_.-]): 1 when there is none, or the
 * redactor has answered that it names no secret; 0 when the redactor must look
 * (a secret, or not asked yet); -1 on error. */
static int
key_known_plain(State *self, int kind, const void *data, Py_ssize_t at)
{
    Py_ssize_t j = at, end, spaces = 0;
    PyObject *key, *known;
    Py_UCS4 c;
    int letters = 0;
    while (j > 0 && spaces < 3) {
        c = PyUnicode_READ(kind, data, j - 1);
        if (c != ' ' && c != '\t') {
            break;
        }
        j--;
        spaces++;
    }
    if (j > 0) {
        c = PyUnicode_READ(kind, data, j - 1);
        if (c == '"' || c == '\'') {
            j--;
        }
    }
    end = j;
    while (j > 0 && end - j < 64) {
        c = PyUnicode_READ(kind, data, j - 1);
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
            letters = 1;
        }
        else if (!((c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) {
            break;
        }
        j--;
    }
    if (!letters) {
        /* No key ("a: b" has one, " : " not), or one without a letter ("request
           42: ...", "10:30"): every secret name has letters (Redactor.is_secret). */
        return 1;
    }
    key = PyUnicode_FromKindAndData(kind, (const char *)data + j * kind, end - j);
    if (key == NULL) {
        return -1;
    }
    known = PyDict_GetItemWithError(self->secret_cache, key);
    Py_DECREF(key);
    if (known == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    return known == Py_False;
}

/* Whether the default credential patterns could change ``text`` (an exact str):
 * 1 yes (or maybe: the Python redactor decides), 0 certainly not, -1 error. A
 * '@', "eyJ" or an AWS key id's prefix means maybe; each ':' or '=' means maybe
 * unless the key before it is one the redactor has found plain. */
static int
needs_redaction_data(State *self, int kind, const void *data, Py_ssize_t n)
{
    Py_ssize_t i, k;
    for (i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c == ':' || c == '=') {
            int plain = key_known_plain(self, kind, data, i);
            if (plain != 1) {
                return plain < 0 ? -1 : 1;
            }
        }
        else if (c == '@') {
            return 1;
        }
        else if (c == 'e' && i + 2 < n && PyUnicode_READ(kind, data, i + 1) == 'y' &&
                 PyUnicode_READ(kind, data, i + 2) == 'J') {
            return 1;
        }
        else if (c == 'A' && i + 3 < n) {
            for (k = 0; k < (Py_ssize_t)(sizeof aws_prefixes / 3); k++) {
                if (PyUnicode_READ(kind, data, i + 1) == (Py_UCS4)aws_prefixes[k][0] &&
                    PyUnicode_READ(kind, data, i + 2) == (Py_UCS4)aws_prefixes[k][1] &&
                    PyUnicode_READ(kind, data, i + 3) == (Py_UCS4)aws_prefixes[k][2]) {
                    return 1;
                }
            }
        }
    }
    return 0;
}

static int
needs_redaction(State *self, PyObject *text)
{
    return needs_redaction_data(self, PyUnicode_KIND(text), PyUnicode_DATA(text),
                                PyUnicode_GET_LENGTH(text));
}

/* What follows the text's JSON string in an entry: ``rest`` (the stamp: the
 * timestamp, level, app, env), then for a line with meta its JSON and the
 * closing brace (``rest`` then ends with ``"meta":``). ASCII only. */
typedef struct {
    const char *rest;
    Py_ssize_t n_rest;
    const char *meta;  /* NULL: no meta */
    Py_ssize_t n_meta;
} Tail;

static Py_ssize_t
tail_size(const Tail *tail)
{
    return tail->n_rest + (tail->meta != NULL ? tail->n_meta + 1 : 0);
}

static void
write_tail(char *out, const Tail *tail)
{
    memcpy(out, tail->rest, tail->n_rest);
    if (tail->meta != NULL) {
        memcpy(out + tail->n_rest, tail->meta, tail->n_meta);
        out[tail->n_rest + tail->n_meta] = '}';
    }
}

/* LINE_HEAD, the text as a JSON string, then the tail, UTF-8 encoded: what
 * ``f"{LINE_HEAD}{_escape(text)}{rest}".encode()`` makes (with meta: the same
 * with ``{data.decode()}}}`` added). NULL (an error may be set) when that
 * would fail, as it does in Python for a lone surrogate. */
static PyObject *
join_entry(State *self, PyObject *text, const Tail *tail)
{
    PyObject *head = self->line_head, *escaped, *entry = NULL, *prefix = NULL;
    Py_ssize_t n_head = PyUnicode_GET_LENGTH(head), n_tail = tail_size(tail);
    char *out;
    if (PyUnicode_IS_ASCII(text)) {
        const unsigned char *data = PyUnicode_1BYTE_DATA(text);
        Py_ssize_t n_text = PyUnicode_GET_LENGTH(text);
        if (!needs_escape(data, n_text)) {
            /* The common message: nothing to escape, so its JSON string is the text
               in quotes; no intermediate string. */
            entry = PyBytes_FromStringAndSize(NULL, n_head + n_text + 2 + n_tail);
            if (entry == NULL) {
                return NULL;
            }
            out = PyBytes_AS_STRING(entry);
            memcpy(out, PyUnicode_1BYTE_DATA(head), n_head);
            out += n_head;
            *out++ = '"';
            memcpy(out, data, n_text);
            out += n_text;
            *out++ = '"';
            write_tail(out, tail);
            return entry;
        }
    }
    escaped = PyObject_CallOneArg(self->escape, text);
    if (escaped == NULL || !PyUnicode_CheckExact(escaped)) {
        Py_XDECREF(escaped);
        return NULL;
    }
    if (PyUnicode_IS_ASCII(escaped)) {
        Py_ssize_t n_escaped = PyUnicode_GET_LENGTH(escaped);
        entry = PyBytes_FromStringAndSize(NULL, n_head + n_escaped + n_tail);
        if (entry != NULL) {
            out = PyBytes_AS_STRING(entry);
            memcpy(out, PyUnicode_1BYTE_DATA(head), n_head);
            memcpy(out + n_head, PyUnicode_1BYTE_DATA(escaped), n_escaped);
            write_tail(out + n_head + n_escaped, tail);
        }
        Py_DECREF(escaped);
        return entry;
    }
    /* UTF-8 needed: the general str machinery for the head and text. */
    {
        PyObject *joined = PyUnicode_Concat(head, escaped);
        if (joined != NULL) {
            prefix = PyUnicode_AsUTF8String(joined);
            Py_DECREF(joined);
        }
    }
    Py_DECREF(escaped);
    if (prefix == NULL) {
        return NULL;
    }
    entry = PyBytes_FromStringAndSize(NULL, PyBytes_GET_SIZE(prefix) + n_tail);
    if (entry != NULL) {
        out = PyBytes_AS_STRING(entry);
        memcpy(out, PyBytes_AS_STRING(prefix), PyBytes_GET_SIZE(prefix));
        write_tail(out + PyBytes_GET_SIZE(prefix), tail);
    }
    Py_DECREF(prefix);
    return entry;
}

/* Decimal digits of ``value`` into ``out`` (at least 20 bytes), as str(int)
 * writes them; returns how many. */
static Py_ssize_t
write_decimal(long long value, char *out)
{
    char digits[24];
    Py_ssize_t n = 0, i, len = 0;
    unsigned long long magnitude;
    if (value < 0) {
        out[len++] = '-';
        magnitude = 0ULL - (unsigned long long)value;
    }
    else {
        magnitude = (unsigned long long)value;
    }
    do {
        digits[n++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude != 0);
    for (i = n - 1; i >= 0; i--) {
        out[len++] = digits[i];
    }
    return len;
}

/* At most this many arguments are formatted here. */
#define MAX_FAST_ARGS 16

/* The entry for ``msg % args`` made directly, with no string in between, in
 * the common case: an ASCII message whose only conversions are %s, %d, %i
 * and %%, arguments that are ASCII str (for %s) or int (for %s, %d, %i) within
 * 64 bits, and nothing JSON must escape. For such input the text is certain:
 * str of a str is itself, and %s, %d and %i of an int are its decimal digits.
 * NULL without an error for anything else: PyUnicode_Format decides then. */
static PyObject *
format_entry(State *self, PyObject *msg, PyObject *args, const Tail *tail)
{
    const unsigned char *fmt;
    Py_ssize_t n_fmt, n_args = PyTuple_GET_SIZE(args), i, k = 0, n_text = 0;
    Py_ssize_t n_head;
    char numbers[MAX_FAST_ARGS][24];
    Py_ssize_t number_len[MAX_FAST_ARGS];
    PyObject *entry;
    char *out;

    if (!PyUnicode_IS_ASCII(msg) || n_args > MAX_FAST_ARGS) {
        return NULL;
    }
    fmt = PyUnicode_1BYTE_DATA(msg);
    n_fmt = PyUnicode_GET_LENGTH(msg);
    /* First pass: check everything and measure. */
    for (i = 0; i < n_fmt; i++) {
        unsigned char c = fmt[i];
        PyObject *arg;
        if (c != '%') {
            if (escaped_in_json(c)) {
                return NULL;
            }
            n_text++;
            continue;
        }
        if (++i == n_fmt) {
            return NULL;
        }
        c = fmt[i];
        if (c == '%') {
            n_text++;
            continue;
        }
        if ((c != 's' && c != 'd' && c != 'i') || k == n_args) {
            return NULL;
        }
        arg = PyTuple_GET_ITEM(args, k);
        if (PyLong_CheckExact(arg)) {
            int overflow;
            long long value = PyLong_AsLongLongAndOverflow(arg, &overflow);
            if (overflow || (value == -1 && PyErr_Occurred())) {
                PyErr_Clear();
                return NULL;
            }
            number_len[k] = write_decimal(value, numbers[k]);
            n_text += number_len[k];
        }
        else if (c == 's' && PyUnicode_CheckExact(arg) && PyUnicode_IS_ASCII(arg)) {
            Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
            if (needs_escape(PyUnicode_1BYTE_DATA(arg), n)) {
                return NULL;
            }
            number_len[k] = -1;
            n_text += n;
        }
        else {
            return NULL;
        }
        k++;
    }
    if (k != n_args || n_text == 0) {
        return NULL;  /* "not all arguments converted", or an empty line: Python's cases */
    }
    /* Second pass: write. */
    n_head = PyUnicode_GET_LENGTH(self->line_head);
    entry = PyBytes_FromStringAndSize(NULL, n_head + 1 + n_text + 1 + tail_size(tail));
    if (entry == NULL) {
        return NULL;
    }
    out = PyBytes_AS_STRING(entry);
    memcpy(out, PyUnicode_1BYTE_DATA(self->line_head), n_head);
    out += n_head;
    *out++ = '"';
    for (i = 0, k = 0; i < n_fmt; i++) {
        unsigned char c = fmt[i];
        if (c != '%') {
            *out++ = (char)c;
            continue;
        }
        c = fmt[++i];
        if (c == '%') {
            *out++ = '%';
            continue;
        }
        if (number_len[k] >= 0) {
            memcpy(out, numbers[k], number_len[k]);
            out += number_len[k];
        }
        else {
            PyObject *arg = PyTuple_GET_ITEM(args, k);
            Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
            memcpy(out, PyUnicode_1BYTE_DATA(arg), n);
            out += n;
        }
        k++;
    }
    if (self->text_triggers) {
        int needs = needs_redaction_data(self, PyUnicode_1BYTE_KIND,
                                         PyBytes_AS_STRING(entry) + n_head + 1, n_text);
        if (needs != 0) {
            /* The caller's PyUnicode_Format route asks the redactor (an error is
               cleared there: that route decides again). */
            PyErr_Clear();
            Py_DECREF(entry);
            return NULL;
        }
    }
    *out++ = '"';
    write_tail(out, tail);
    return entry;
}

/* What an attribute past the standard ones is to the fast paths: 1 an extra
 * they may ship (a str key, no standard name, known safe where the redactor is
 * on), 0 one to leave out (message or asctime: a formatter that ran first added
 * it), -1 one only the Python code may handle (a standard attribute set again,
 * so moved to the end; a key that may be secret). No error is left set. */
static int
extra_key(State *self, PyObject *key)
{
    int standard;
    if (!PyUnicode_CheckExact(key)) {
        return -1;
    }
    standard = PySet_Contains(self->standard_attrs, key);
    if (standard == 1 && PySet_Contains(self->init_attrs, key) == 0) {
        return 0;
    }
    if (standard != 0 ||
        (self->safe_keys != Py_None && PySet_Contains(self->safe_keys, key) != 1)) {
        PyErr_Clear();
        return -1;
    }
    return 1;
}

/* LineBuilder.meta_json's rule, where the redactor is on: meta JSON holding an
 * object (a '{' past the first byte) or a list deep enough to cut may hide a
 * secret, and must take the redaction walk (in Python). */
static int
meta_needs_walk(State *self, const char *json, Py_ssize_t n)
{
    Py_ssize_t k, brackets = 0;
    if (self->safe_keys == Py_None) {
        return 0;
    }
    for (k = 1; k < n; k++) {
        if (json[k] == '{' || (json[k] == '[' && ++brackets >= self->max_depth)) {
            return 1;
        }
    }
    return 0;
}

/* Room for the meta JSON written directly; longer meta goes through orjson. */
#define DIRECT_META_MAX 1024

/* The common case of extras_json, written here instead of through a dict and
 * orjson.dumps: every extra's key is ASCII with nothing JSON escapes, and its
 * value is such a str, an int within 64 bits, a bool or None. The JSON is then
 * certain: orjson writes exactly this, compact, keys in order. 1 with ``*out``
 * set (the bytes, or None for no meta); 0 for anything else (no error set):
 * extras_json then takes the general way, which decides. */
static int
direct_extras_json(State *self, PyObject *attrs, PyObject **out)
{
    char buf[DIRECT_META_MAX];
    PyObject *key, *value;
    Py_ssize_t n = 0, pos = 0, seen = 0, count = 0;
    buf[n++] = '{';
    while (PyDict_Next(attrs, &pos, &key, &value)) {
        Py_ssize_t n_key;
        int kind;
        if (seen++ < self->plain_len) {
            continue;
        }
        kind = extra_key(self, key);
        if (kind == 0) {
            continue;
        }
        if (kind < 0 || !PyUnicode_IS_ASCII(key)) {
            return 0;
        }
        n_key = PyUnicode_GET_LENGTH(key);
        /* key, quotes, colon, comma, and the longest value but a str's: 24 */
        if (n + n_key + 4 + 24 + 1 > DIRECT_META_MAX ||
            needs_escape(PyUnicode_1BYTE_DATA(key), n_key)) {
            return 0;
        }
        if (count++) {
            buf[n++] = ',';
        }
        buf[n++] = '"';
        memcpy(buf + n, PyUnicode_1BYTE_DATA(key), n_key);
        n += n_key;
        buf[n++] = '"';
        buf[n++] = ':';
        if (PyUnicode_CheckExact(value)) {
            Py_ssize_t n_value = PyUnicode_GET_LENGTH(value);
            if (!PyUnicode_IS_ASCII(value) || n + n_value + 2 + 1 > DIRECT_META_MAX ||
                needs_escape(PyUnicode_1BYTE_DATA(value), n_value) ||
                (self->text_triggers && needs_redaction(self, value) != 0)) {
                PyErr_Clear();
                return 0;
            }
            buf[n++] = '"';
            memcpy(buf + n, PyUnicode_1BYTE_DATA(value), n_value);
            n += n_value;
            buf[n++] = '"';
        }
        else if (value == Py_True || value == Py_False || value == Py_None) {
            const char *word = value == Py_True ? "true" : value == Py_False ? "false" : "null";
            Py_ssize_t n_word = (Py_ssize_t)strlen(word);
            memcpy(buf + n, word, n_word);
            n += n_word;
        }
        else if (PyLong_CheckExact(value)) {
            int overflow;
            long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (overflow || (number == -1 && PyErr_Occurred())) {
                PyErr_Clear();
                return 0;
            }
            n += write_decimal(number, buf + n);
        }
        else {
            return 0;  /* a float (orjson's own formatting), or something odd */
        }
    }
    if (count == 0) {
        *out = Py_NewRef(Py_None);
        return 1;
    }
    buf[n++] = '}';
    if (meta_needs_walk(self, buf, n)) {
        return 0;
    }
    *out = PyBytes_FromStringAndSize(buf, n);
    if (*out == NULL) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* The JSON of a record's extra= fields, as ``meta_json(_extras(attrs))``
 * makes it, when that is certain without the Python code: every extra comes
 * after the standard attributes, is no standard name, and holds a str, int,
 * float, bool or None (so dumping runs no user code); and where the redactor
 * is on, every key is one it has found safe and the JSON holds no object and
 * no list deep enough to cut (the rule ``LineBuilder.meta_json`` applies).
 * None when the only attributes past the standard ones are those a formatter
 * adds (message, asctime): no meta, as in Python. NULL (an error may be set)
 * for anything else. */
static PyObject *
extras_json(State *self, PyObject *attrs)
{
    PyObject *key, *value, *meta, *data;
    Py_ssize_t pos = 0, seen = 0;
    int kind;
    if (direct_extras_json(self, attrs, &data)) {
        return data;
    }
    meta = PyDict_New();
    if (meta == NULL) {
        return NULL;
    }
    while (PyDict_Next(attrs, &pos, &key, &value)) {
        if (seen++ < self->plain_len) {
            continue;  /* the standard attributes, set first by LogRecord.__init__ */
        }
        kind = extra_key(self, key);
        if (kind == 0) {
            continue;
        }
        if (kind < 0 || !is_plain_arg(value) ||
            (self->text_triggers && PyUnicode_CheckExact(value) &&
             needs_redaction(self, value) != 0) ||
            PyDict_SetItem(meta, key, value) != 0) {
            /* An odd value or key: the Python code sorts it out. */
            Py_DECREF(meta);
            return NULL;
        }
    }
    if (PyDict_GET_SIZE(meta) == 0) {
        Py_DECREF(meta);
        return Py_NewRef(Py_None);  /* nothing but what a formatter added: no meta */
    }
    data = PyObject_CallOneArg(self->dumps, meta);
    Py_DECREF(meta);
    if (data == NULL || !PyBytes_CheckExact(data)) {
        Py_XDECREF(data);
        return NULL;
    }
    if (meta_needs_walk(self, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))) {
        Py_DECREF(data);
        return NULL;
    }
    return data;
}

/* The entry (separator and line) for ``record``, as handle would build it
 * inline; NULL (an error may be set) when the Python code must decide. */
static PyObject *
build_entry(State *self, PyObject *handler_dict, PyObject *record)
{
    PyObject *f[N_FIELDS];
    PyObject *attrs = NULL;  /* the record's dict, when it was built already */
    PyObject *text = NULL, *entry = NULL, *meta = NULL, *v, *stamp, *rest;
    PyObject *held_rest = NULL;
    Tail tail;
    Referents r;
    int i;

    if ((PyObject *)Py_TYPE(record) != self->record_type) {
        return NULL;
    }
    v = PyDict_GetItemWithError(handler_dict, s_filters);
    if (v == NULL || !PyList_CheckExact(v) || PyList_GET_SIZE(v) != 0) {
        return NULL;
    }
    if (PyDict_GetItemWithError(handler_dict, s_formatter) != self->default_formatter) {
        return NULL;
    }
    if (PySet_GET_SIZE(self->busy_threads) != 0) {
        /* A thread is inside the Python path. If it is this one, this record
           comes from a __str__, signal handler or finalizer run there: Python
           decides (it drops re-entry). Other threads do not matter. */
        PyObject *ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
        int busy = ident == NULL ? -1 : PySet_Contains(self->busy_threads, ident);
        Py_XDECREF(ident);
        if (busy != 0) {
            return NULL;
        }
    }
    v = PyDict_GetItemWithError(self->context_dict, s_in_use);
    if (v != Py_False) {
        /* A request context was bound somewhere in this process: is one bound
           here? Then its fields are meta, and the Python code adds them. */
        PyObject *bound = NULL;
        int empty;
        if (v != Py_True || PyContextVar_Get(self->context_var, NULL, &bound) != 0 ||
            bound == NULL) {
            return NULL;
        }
        empty = PyDict_CheckExact(bound) && PyDict_GET_SIZE(bound) == 0;
        Py_DECREF(bound);
        if (!empty) {
            return NULL;
        }
    }
    if (self->plain_referents > 0 && collect_referents(record, &r) != 0) {
        return NULL;
    }
    if (self->plain_referents > 0 && r.n == self->plain_referents) {
        for (i = 0; i < N_FIELDS; i++) {
            f[i] = r.items[self->index[i]];
        }
    }
    else {
        /* Its dict was built already (another handler read it, or this Python
           always builds it): the Python rule then, a plain record has exactly
           plain_len attributes. */
        attrs = PyObject_GenericGetDict(record, NULL);
        if (attrs == NULL || PyDict_GET_SIZE(attrs) < self->plain_len) {
            goto done;
        }
        if (PyDict_GET_SIZE(attrs) > self->plain_len) {
            /* extra= fields: meta, when they are plain values (else Python). First:
               it allocates a dict, which may run the garbage collector, and the
               fields below are borrowed. */
            meta = extras_json(self, attrs);
            if (meta == NULL) {
                goto done;
            }
            if (meta == Py_None) {
                Py_CLEAR(meta);
            }
        }
        for (i = 0; i < N_FIELDS; i++) {
            f[i] = PyDict_GetItemWithError(attrs, field_names[i]);
            if (f[i] == NULL) {
                goto done;
            }
        }
    }
    /* Every value is checked for its type: a record that lost an attribute and
       gained another reads shifted, and fails here (see the tests). */
    if (f[F_THREAD] != Py_None && !PyLong_CheckExact(f[F_THREAD])) {
        goto done;
    }
    if (PySet_GET_SIZE(self->sender_threads) != 0) {
        /* Made on a sender thread (urllib3's logging, say): Python decides. With
           logging.logThreads off a record has no thread: the one running is it. */
        int made_on_sender;
        if (f[F_THREAD] != Py_None) {
            made_on_sender = PySet_Contains(self->sender_threads, f[F_THREAD]);
        }
        else {
            PyObject *ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
            made_on_sender = ident == NULL ? -1 : PySet_Contains(self->sender_threads, ident);
            Py_XDECREF(ident);
        }
        if (made_on_sender != 0) {
            goto done;
        }
    }
    if (PyDict_GetItemWithError(handler_dict, s_last_name) != f[F_NAME]) {
        goto done;  /* a logger not yet known not to be the library's own */
    }
    if (!PyUnicode_CheckExact(f[F_MSG]) || f[F_EXC_INFO] != Py_None ||
        f[F_EXC_TEXT] != Py_None || f[F_STACK_INFO] != Py_None) {
        goto done;
    }
    if (!PyUnicode_CheckExact(f[F_LEVELNAME]) || !PyFloat_CheckExact(f[F_CREATED])) {
        goto done;
    }
    stamp = PyDict_GetItemWithError(meta == NULL ? self->stamps : self->meta_stamps,
                                    f[F_LEVELNAME]);
    if (stamp == NULL || !PyTuple_CheckExact(stamp) || PyTuple_GET_SIZE(stamp) != 3) {
        goto done;
    }
    rest = PyTuple_GET_ITEM(stamp, 2);
    /* Held: ``tail`` points into its UTF-8, and what runs below may run Python code
       (the redactor; a finalizer when the key lookups allocate) that logs and
       replaces the level's stamp, which would free it under us. */
    held_rest = Py_NewRef(rest);
    {
        PyObject *low = PyTuple_GET_ITEM(stamp, 0), *high = PyTuple_GET_ITEM(stamp, 1);
        double millis = PyFloat_AS_DOUBLE(f[F_CREATED]) * 1000.0;
        if (!PyFloat_CheckExact(low) || !PyFloat_CheckExact(high) ||
            !PyUnicode_CheckExact(rest)) {
            goto done;
        }
        /* Outside the stamp's millisecond: the Python code makes and caches a new one. */
        if (!(PyFloat_AS_DOUBLE(low) <= millis && millis < PyFloat_AS_DOUBLE(high))) {
            goto done;
        }
    }
    /* UTF-8 of the stamp (app and env may be any text); cached in the str. */
    tail.rest = PyUnicode_AsUTF8AndSize(rest, &tail.n_rest);
    if (tail.rest == NULL) {
        goto done;
    }
    tail.meta = meta == NULL ? NULL : PyBytes_AS_STRING(meta);
    tail.n_meta = meta == NULL ? 0 : PyBytes_GET_SIZE(meta);
    v = f[F_ARGS];
    if (v == Py_None || (PyTuple_CheckExact(v) && PyTuple_GET_SIZE(v) == 0)) {
        text = Py_NewRef(f[F_MSG]);
    }
    else {
        Py_ssize_t k, n;
        if (!PyTuple_CheckExact(v)) {
            goto done;
        }
        n = PyTuple_GET_SIZE(v);
        for (k = 0; k < n; k++) {
            if (!is_plain_arg(PyTuple_GET_ITEM(v, k))) {
                goto done;
            }
        }
        entry = format_entry(self, f[F_MSG], v, &tail);
        if (entry != NULL || PyErr_Occurred()) {
            goto done;
        }
        text = PyUnicode_Format(f[F_MSG], v);
        if (text == NULL) {
            goto done;  /* the Python code reports it as unformattable */
        }
    }
    if (!PyUnicode_CheckExact(text) || PyUnicode_GET_LENGTH(text) == 0) {
        goto done;
    }
    if (self->text_triggers) {
        int needs = needs_redaction(self, text);
        if (needs < 0) {
            goto done;
        }
        if (needs == 0) {
            goto join;
        }
    }
    if (self->text_triggers) {
        /* May hold a credential: the redactor's patterns decide (``rest`` is held). */
        PyObject *redacted;
        redacted = PyObject_CallOneArg(self->redact_text, text);
        if (redacted == NULL || !PyUnicode_CheckExact(redacted) ||
            PyUnicode_GET_LENGTH(redacted) == 0) {
            Py_XDECREF(redacted);
            goto done;
        }
        Py_SETREF(text, redacted);
    }
join:
    entry = join_entry(self, text, &tail);
done:
    Py_XDECREF(attrs);
    Py_XDECREF(text);
    Py_XDECREF(meta);
    Py_XDECREF(held_rest);
    return entry;
}

/* Buffer.put_entry's lock-free protocol, as handle inlines it: 1 queued, 0 when
 * the locked path must queue it, -1 on error (nothing queued). */
static int
queue_entry(State *self, PyObject *entry, Py_ssize_t size)
{
    PyObject *buffer = PyDict_GetItemWithError(self->client_dict, s_buffer);
    PyObject *queued, *limit, *total, *r;
    long long q, lim;
    if (buffer == NULL) {
        return -1;
    }
    if (buffer != self->buffer) {
        /* Owned while looked into: the allocations below may run the garbage
           collector (3.10, 3.11), and a finalizer could replace client._buffer. */
        PyObject *bdict, *entries, *append = NULL;
        Py_INCREF(buffer);
        bdict = PyObject_GenericGetDict(buffer, NULL);
        if (bdict != NULL) {
            entries = Py_XNewRef(PyDict_GetItemWithError(bdict, s_entries));
            append = entries == NULL ? NULL : PyObject_GetAttr(entries, s_append);
            Py_XDECREF(entries);
        }
        if (append == NULL ||
            PyDict_GetItemWithError(self->client_dict, s_buffer) != buffer) {
            /* Failed, or replaced meanwhile: the Python code queues this one. */
            Py_XDECREF(append);
            Py_XDECREF(bdict);
            Py_DECREF(buffer);
            return -1;
        }
        Py_XSETREF(self->buffer, buffer);
        Py_XSETREF(self->buffer_dict, bdict);
        Py_XSETREF(self->append, append);
    }
    queued = PyDict_GetItemWithError(self->buffer_dict, s_queued_bytes);
    limit = PyDict_GetItemWithError(self->buffer_dict, s_fast_limit);
    if (queued == NULL || limit == NULL || !PyLong_CheckExact(queued) ||
        !PyLong_CheckExact(limit)) {
        return -1;
    }
    q = PyLong_AsLongLong(queued);
    lim = PyLong_AsLongLong(limit);
    if ((q == -1 || lim == -1) && PyErr_Occurred()) {
        return -1;
    }
    if (q + size > lim) {
        return 0;
    }
    /* Counted before the append (take() must never see a line uncounted); no
       other thread runs in between: nothing here releases the GIL. */
    total = PyLong_FromLongLong(q + size);
    if (total == NULL) {
        return -1;
    }
    Py_INCREF(queued);  /* to undo with, should the append fail */
    if (PyDict_SetItem(self->buffer_dict, s_queued_bytes, total) != 0) {
        Py_DECREF(total);
        Py_DECREF(queued);
        return -1;
    }
    Py_DECREF(total);
    r = PyObject_CallOneArg(self->append, entry);
    if (r == NULL) {
        /* Not queued after all: take the count back (the caller clears the error
           and goes the Python way). */
        PyErr_Clear();
        if (PyDict_SetItem(self->buffer_dict, s_queued_bytes, queued) != 0) {
            PyErr_Clear();
        }
        Py_DECREF(queued);
        return -1;
    }
    Py_DECREF(r);
    Py_DECREF(queued);
    return 1;
}

/* -- the method ----------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *slow;  /* the Python LogDNAHandler.handle */
} Handle;

static PyObject *
handle_call(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Handle *self = (Handle *)op;
    PyObject *handler_dict, *state, *entry = NULL;
    if (PyVectorcall_NARGS(nargsf) != 2 || kwnames != NULL) {
        return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);
    }
    handler_dict = PyObject_GenericGetDict(args[0], NULL);
    if (handler_dict == NULL) {
        PyErr_Clear();
        return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);
    }
    state = PyDict_GetItemWithError(handler_dict, s_fast);
    if (state != NULL && Py_IS_TYPE(state, &StateType)) {
        /* Owned while in use: code run by an allocation (a finalizer) could
           replace handler._fast. */
        State *st = (State *)Py_NewRef(state);
        entry = build_entry(st, handler_dict, args[1]);
        if (entry != NULL) {
            Py_ssize_t size = PyBytes_GET_SIZE(entry) + st->entry_overhead;
            /* Over this, encode() would cut the text: the Python code does that. */
            if (size <= st->inline_max) {
                int queued = queue_entry(st, entry, size);
                if (queued == 1) {
                    st->lines++;
                    Py_DECREF(st);
                    Py_DECREF(entry);
                    Py_DECREF(handler_dict);
                    Py_RETURN_TRUE;
                }
                if (queued == 0) {
                    /* Full, closed, due to wake the sender, or not started yet:
                       the Python code queues it the locked way and reports trouble. */
                    PyObject *call[3] = {args[0], args[1], entry};
                    PyObject *result;
                    st->lines++;
                    result = PyObject_Vectorcall(st->queue, call, 3, NULL);
                    Py_DECREF(st);
                    Py_DECREF(entry);
                    Py_DECREF(handler_dict);
                    return result;
                }
            }
            Py_DECREF(entry);
        }
        Py_DECREF(st);
    }
    Py_DECREF(handler_dict);
    /* Not the common record, or something failed before the line was queued:
       the Python code builds it (again) and deals with what went wrong. */
    if (PyErr_Occurred()) {
        PyErr_Clear();
    }
    return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);
}

static PyObject *
handle_get(PyObject *self, PyObject *obj, PyObject *Py_UNUSED(type))
{
    /* A method, like the function it replaces. */
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

static PyObject *
handle_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"slow", NULL};
    PyObject *slow;
    Handle *self;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O", kwlist, &slow)) {
        return NULL;
    }
    if (!PyCallable_Check(slow)) {
        PyErr_SetString(PyExc_TypeError, "slow must be callable");
        return NULL;
    }
    self = (Handle *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = handle_call;
    self->slow = Py_NewRef(slow);
    return (PyObject *)self;
}

static int
handle_traverse(Handle *self, visitproc visit, void *arg)
{
    Py_VISIT(self->slow);
    return 0;
}

static int
handle_clear(Handle *self)
{
    Py_CLEAR(self->slow);
    return 0;
}

static void
handle_dealloc(Handle *self)
{
    PyObject_GC_UnTrack(self);
    handle_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* __doc__, __name__, __qualname__, __module__ and __wrapped__: the Python
   method's, so help(), inspect and documentation tools see the method. */
static PyObject *
handle_forward(Handle *self, void *closure)
{
    if (closure == NULL) {
        return Py_NewRef(self->slow);
    }
    return PyObject_GetAttrString(self->slow, (const char *)closure);
}

static PyGetSetDef handle_getset[] = {
    {"__doc__", (getter)handle_forward, NULL, NULL, "__doc__"},
    {"__name__", (getter)handle_forward, NULL, NULL, "__name__"},
    {"__qualname__", (getter)handle_forward, NULL, NULL, "__qualname__"},
    {"__module__", (getter)handle_forward, NULL, NULL, "__module__"},
    {"__wrapped__", (getter)handle_forward, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject HandleType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "logdna_client._speedups.Handle",
    .tp_basicsize = sizeof(Handle),
    /* METHOD_DESCRIPTOR: the interpreter calls it as it calls a function found on
       the class, with the handler first, without making a bound method. */
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_new = handle_new,
    .tp_dealloc = (destructor)handle_dealloc,
    .tp_traverse = (traverseproc)handle_traverse,
    .tp_clear = (inquiry)handle_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Handle, vectorcall),
    .tp_descr_get = handle_get,
    .tp_getset = handle_getset,
};

/* -- the module ----------------------------------------------------------------- */

static PyMethodDef module_methods[] = {
    {"referents", referents, METH_O,
     "How many objects the garbage collector sees an object refer to (-1: none)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "logdna_client._speedups",
    .m_doc = "LogDNAHandler.handle for the common record, in C; optional (see _handler.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

static int
intern_all(void)
{
    int i;
#define INTERN(var, text)                           \
    if ((var = PyUnicode_InternFromString(text)) == NULL) { \
        return -1;                                  \
    }
    INTERN(s_filters, "filters");
    INTERN(s_formatter, "formatter");
    INTERN(s_last_name, "_last_name");
    INTERN(s_in_use, "in_use");
    INTERN(s_buffer, "_buffer");
    INTERN(s_queued_bytes, "queued_bytes");
    INTERN(s_fast_limit, "fast_limit");
    INTERN(s_entries, "entries");
    INTERN(s_append, "append");
    INTERN(s_fast, "_fast");
#undef INTERN
    for (i = 0; i < N_FIELDS; i++) {
        field_names[i] = PyUnicode_InternFromString(field_text[i]);
        if (field_names[i] == NULL) {
            return -1;
        }
    }
    return 0;
}

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *module;
    if (intern_all() != 0 || PyType_Ready(&StateType) < 0 || PyType_Ready(&HandleType) < 0) {
        return NULL;
    }
    module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "API", SPEEDUPS_API) < 0 ||
        PyModule_AddObjectRef(module, "State", (PyObject *)&StateType) < 0 ||
        PyModule_AddObjectRef(module, "Handle", (PyObject *)&HandleType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

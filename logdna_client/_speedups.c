/*
 * A LogDNAHandler's handle for the common record, and a LogDNAProcessor's call
 * for the common structlog event, in C (see _native.py).
 *
 * A leaf: it reads the record through the public C API (its __dict__, as
 * PyObject_GenericGetDict gives it), uses only objects the handler or processor
 * hands it when it is built, and builds the entry bytes for the common record, which
 * is most of what the Python path costs in bytecode: the commonest messages
 * (%s and %d of ints and plain strs) and flat scalar meta are written straight
 * into bytes, as PyUnicode_Format and orjson would write them, with no str or
 * dict made on the way. Each job mirrors exactly one Python function, named
 * where it is done:
 *
 *   which records qualify (may_ship): LogDNAHandler._deliver;
 *   a record's text, meta and entry (build; text_of for the text, meta_json for
 *     the meta's JSON): LogDNAHandler._queue_record;
 *   which events qualify, and their meta (common_entry): LogDNAProcessor._ship_common;
 *   the entry's bytes (entry_for, entry_of): _line.LineBuilder.entry;
 *   whether text needs the redactor (needs_redaction): _redact.has_trigger;
 *   whether meta needs the redaction walk (add_meta, item by item):
 *     _redact.Redactor.plain_meta;
 *   queueing it (put_entry): _buffer.Buffer.put_entry, its size _buffer.entry_cost;
 *   the garbage collector's hook's dispatch (on_senders): _threads.gc_hook's.
 *
 * Every other record or event, and any for which something here fails, goes
 * to the Python LogDNAHandler.handle or LogDNAProcessor._process untouched,
 * which decides and builds as it always does (tests/test_speedups.py and
 * tests/test_speedups_events.py check that both give the same bytes).
 *
 * A Handle runs little user code (only exact LogRecord instances, exact builtin
 * argument and meta types, the stdlib's own getMessage and our formatter; at
 * most the __eq__ of an extra= key that collides with a name, and whatever a
 * signal handler or another thread does while the redactor's Python code runs,
 * which is why the values it reads from the record are held), so it needs no
 * re-entry guard; an EventHandle runs more (timestamp_of, a timestamp's
 * __float__), and marks its thread busy as LogDNAProcessor._process does.
 * The put runs no Python code and releases no GIL, so the buffer's lock-free
 * protocol holds as it does in Python (see _buffer.py). The module declares that
 * it needs the GIL, and _native.py does not import it on builds without one, nor
 * on other Pythons than CPython.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#if PY_VERSION_HEX < 0x030C0000  /* the member names before 3.12 */
#include <structmember.h>
#define Py_T_OBJECT_EX T_OBJECT_EX
#define Py_T_PYSSIZET T_PYSSIZET
#define Py_READONLY READONLY
#endif

/* What _native.py expects of this module; a build left from another version
 * of the package (an editable install not rebuilt) is not used. */
#define SPEEDUPS_API 10

/* Attribute names: the stdlib's public ones and the buffer's lock-free protocol. */
#define NAMES(X)                                                                          \
    X(filters) X(formatter) X(getMessage) X(queued_bytes) X(fast_limit) X(entries)        \
    X(append) X(name) X(msg) X(args) X(levelname) X(exc_info) X(exc_text) X(stack_info)  \
    X(created) X(thread) X(event) X(level) X(time)
#define DECLARE(name) static PyObject *s_##name;
NAMES(DECLARE)
#undef DECLARE

/* Both types' state (a Handle, an EventHandle): what each is handed when built
 * (both: the Python path ``slow``, its locked put ``queue``, _native.pieces,
 * the thread sets, the request context), and what put_entry keeps. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *slow, *queue, *buffer, *sender_threads, *busy_threads, *context_var;
    PyObject *safe_keys, *dumps, *escape, *level_tails;
    PyObject *head, *timestamp_key, *meta_key, *end;  /* _line.ENTRY_* */
    PyObject *redact_text;   /* Redactor.text_triggered, or None: no text patterns here */
    PyObject *secret_cache;  /* Redactor's key -> is-a-secret answers (a live dict) */
    /* A Handle's: its handler, and what tells the common record. */
    PyObject *handler, *record_type, *get_message, *default_formatter, *skip_names;
    PyObject *record_attrs, *meta_cache;
    PyObject *standard_attrs;  /* name -> True: LogRecord.__init__ sets it; False: a formatter */
    /* An EventHandle's: level names that pass -> theirs, what keys that are no meta
       are (structlog._KEY_KINDS), the time module (its time() is read at each
       call, as the Python code reads it: a clock patched later, by freezegun say,
       counts), timestamp_of, and the last thread's ident (an int). */
    PyObject *levels, *key_kinds, *time_module, *timestamp_of, *ident;
    PyObject *append;         /* buffer.entries.append, for append_of */
    PyObject *append_of;      /* the buffer that append belongs to */
    Py_ssize_t plain_len, max_chars, max_entry, entry_overhead;
    Py_ssize_t lines;         /* entries built here and queued (tests read it) */
} Handle;

/* Every object a Handle holds; its traverse and clear are written from this. */
#define HANDLE_OBJECTS(X)                                                                   \
    X(slow) X(queue) X(buffer) X(sender_threads) X(busy_threads) X(context_var)             \
    X(safe_keys) X(dumps) X(escape) X(level_tails) X(head) X(timestamp_key) X(meta_key)     \
    X(end) X(redact_text) X(secret_cache) X(handler) X(record_type) X(get_message)          \
    X(default_formatter) X(skip_names) X(record_attrs) X(meta_cache) X(standard_attrs)      \
    X(levels) X(key_kinds) X(time_module) X(timestamp_of) X(ident) X(append) X(append_of)

/* -- which records qualify: LogDNAHandler._deliver, _queue_record -------------- */

/* Builtin types whose %-formatting and JSON run no user code. */
static int
is_scalar(PyObject *v)
{
    PyTypeObject *t = Py_TYPE(v);
    return t == &PyUnicode_Type || t == &PyLong_Type || t == &PyFloat_Type ||
           t == &PyBool_Type || v == Py_None;
}

/* LogDNAHandler._deliver's checks: 1 when the running thread may ship ``record`` here
 * (not a sender's, not nested, not the library's own logger); 0: Python decides;
 * -1 error. */
static int
may_ship(Handle *self, PyObject *attrs)
{
    /* Owned: a lookup may run the __eq__ of an extra= key that collides with a name,
       which may take the value it found out of the record. */
    PyObject *thread = Py_XNewRef(PyDict_GetItemWithError(attrs, s_thread)), *ident, *own;
    PyObject *name = thread == NULL ? NULL : Py_XNewRef(PyDict_GetItemWithError(attrs, s_name));
    unsigned long running = PyThread_get_thread_ident();
    int found = -1;
    if (thread == NULL || name == NULL || !PyUnicode_CheckExact(name) ||
        (thread != Py_None && !PyLong_CheckExact(thread))) {
        found = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    /* Made on this thread: no new int for its ident. With logging.logThreads off a
       record has no thread: the running one is it. */
    if (thread != Py_None && PyLong_AsUnsignedLong(thread) == running) {
        ident = Py_NewRef(thread);
    }
    else if (PyErr_Occurred() || (ident = PyLong_FromUnsignedLong(running)) == NULL) {
        goto done;
    }
    /* Made on a sender thread, or inside a handler or processor of ours already (the
       nested path): Python decides. */
    found = PySet_Contains(self->sender_threads, thread == Py_None ? ident : thread);
    if (found == 0) {
        found = PySet_Contains(self->busy_threads, ident);
    }
    Py_DECREF(ident);
    if (found != 0) {
        found = found < 0 ? -1 : 0;
        goto done;
    }
    /* A logger known not to be the library's own (LogDNAHandler._is_own). */
    own = PyDict_GetItemWithError(self->skip_names, name);
    found = own == Py_False ? 1 : (PyErr_Occurred() ? -1 : 0);
done:
    Py_XDECREF(thread);
    Py_XDECREF(name);
    return found;
}

/* Whether obj.name is ``expected`` (NULL: an empty list). */
static int
attr_is(PyObject *obj, PyObject *name, PyObject *expected)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    int ok = expected != NULL ? v == expected
                              : v != NULL && PyList_CheckExact(v) && PyList_GET_SIZE(v) == 0;
    Py_XDECREF(v);
    return ok;
}

/* Whether a character of ASCII text stands as itself in a JSON string. */
#define JSON_PLAIN(c) ((unsigned char)(c) >= 0x20 && (c) != '"' && (c) != '\\')

/* Whether ``s`` (an exact str) is ASCII that stands as itself in a JSON string: its
 * characters can be copied between quotes as they are. */
static int
json_plain_str(PyObject *s)
{
    const char *d = (const char *)PyUnicode_DATA(s);
    Py_ssize_t i = 0, n = PyUnicode_GET_LENGTH(s);
    if (!PyUnicode_IS_ASCII(s)) {
        return 0;
    }
    while (i < n && JSON_PLAIN(d[i])) {
        i++;
    }
    return i == n;
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

/* ``msg % args`` (``args`` a tuple, or NULL: ``msg`` as it is) written at
 * ``out`` (``room`` bytes), for the commonest message: ASCII, each conversion a
 * bare %s, %d or %i of an exact int, or %s of an ASCII str, and nothing that JSON
 * escapes. The same characters
 * PyUnicode_Format makes, without making a str; the length, or -1 (no error set)
 * for any other message, which is formatted the general way. */
static Py_ssize_t
format_direct(PyObject *msg, PyObject *args, char *out, Py_ssize_t room)
{
    const char *m = (const char *)PyUnicode_DATA(msg), *piece;
    Py_ssize_t n = PyUnicode_GET_LENGTH(msg), nargs = args ? PyTuple_GET_SIZE(args) : 0;
    Py_ssize_t k = 0, len = 0;
    Py_ssize_t i, size;
    if (!PyUnicode_IS_ASCII(msg)) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        char c = m[i];
        if (c != '%' || nargs == 0) {  /* no args: msg as it is, "%" and all */
            if (!JSON_PLAIN(c) || len >= room) {
                return -1;
            }
            out[len++] = c;
            continue;
        }
        c = ++i < n ? m[i] : 0;
        PyObject *arg = c == '%' || k >= nargs ? NULL : PyTuple_GET_ITEM(args, k++);
        if (c == '%' && len < room) {
            out[len++] = '%';
        }
        else if (arg != NULL && PyLong_CheckExact(arg) && (c == 's' || c == 'd' || c == 'i')) {
            int overflow;
            long long v = PyLong_AsLongLongAndOverflow(arg, &overflow);
            if (overflow || (v == -1 && PyErr_Occurred()) || len + 20 > room) {
                PyErr_Clear();
                return -1;
            }
            len += write_int(v, out + len);
        }
        else if (arg != NULL && PyUnicode_CheckExact(arg) && c == 's' && json_plain_str(arg)) {
            piece = (const char *)PyUnicode_DATA(arg);
            size = PyUnicode_GET_LENGTH(arg);
            if (len + size > room) {
                return -1;
            }
            memcpy(out + len, piece, size);
            len += size;
        }
        else {
            return -1;
        }
    }
    return k == nargs ? len : -1;  /* arguments left over: formatting raises (Python reports it) */
}

/* _queue_record's text (``msg % args``, as the default formatter makes it): a new
 * str, or Py_None when format_direct wrote it at ``buf`` (its length at ``*n``); NULL
 * (maybe an error) to leave the record to Python. */
static PyObject *
text_of(Handle *self, PyObject *attrs, char *buf, Py_ssize_t room, Py_ssize_t *n)
{
    PyObject *msg, *args, *text = NULL;
    /* The handler's own filters (none) and formatter, and the stdlib's getMessage;
       no traceback or stack to add: the message alone. */
    if (!attr_is(self->handler, s_filters, NULL) ||
        !attr_is(self->handler, s_formatter, self->default_formatter) ||
        !attr_is(self->record_type, s_getMessage, self->get_message) ||
        PyDict_GetItemWithError(attrs, s_exc_info) != Py_None ||
        PyDict_GetItemWithError(attrs, s_exc_text) != Py_None ||
        PyDict_GetItemWithError(attrs, s_stack_info) != Py_None) {
        return NULL;
    }
    /* Owned: looking up args may run the __eq__ of a str-subclass extra that a filter
       put before it, which may take the message out of the record. */
    msg = Py_XNewRef(PyDict_GetItemWithError(attrs, s_msg));
    args = msg == NULL ? NULL : Py_XNewRef(PyDict_GetItemWithError(attrs, s_args));
    if (args == NULL || !PyUnicode_CheckExact(msg) ||
        !(args == Py_None || PyTuple_CheckExact(args))) {
        goto done;
    }
    if ((*n = format_direct(msg, args == Py_None ? NULL : args, buf, room)) >= 0) {
        text = Py_NewRef(Py_None);
    }
    else if (args == Py_None || PyTuple_GET_SIZE(args) == 0) {
        text = Py_NewRef(msg);  /* msg % args if args else msg */
    }
    else {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args); i++) {
            if (!is_scalar(PyTuple_GET_ITEM(args, i))) {
                goto done;
            }
        }
        text = PyUnicode_Format(msg, args);  /* a failure is reported by the Python path */
    }
done:
    Py_XDECREF(msg);
    Py_XDECREF(args);
    return text;
}

/* -- the default credential patterns' triggers: _redact.TRIGGER ---------------- */

/* The prefixes of AWS access key ids after their "A" (_redact._AWS_KEY_KINDS; a test
 * checks each): text holding one goes to the Python redactor. */
static const char aws_prefixes[][3] = {
    {'K', 'I', 'A'}, {'S', 'I', 'A'}, {'B', 'I', 'A'}, {'C', 'C', 'A'}, {'G', 'P', 'A'},
    {'I', 'D', 'A'}, {'R', 'O', 'A'}, {'I', 'P', 'A'}, {'N', 'P', 'A'}, {'N', 'V', 'A'},
    {'P', 'K', 'A'},
};

/* Whether a key could stand at ``text[at]`` (a ':' or '=', of ``n`` characters),
 * read back as the key=value pattern reads it (_redact._SEPARATOR_KEY_REVERSED: up
 * to 3 spaces or tabs, a ']' (see below), a quote (escaped or not: up to 15
 * backslashes), then 1 to 64 of [A-Za-z0-9_.-]): 1 when there is none, or the
 * redactor has answered that it names no secret; 0 when the redactor must look (a
 * secret, not asked yet, or a URL-encoded bracket's key, which it judges by part
 * of the key: _key_name); -1 on error. */
static int
key_known_plain(Handle *self, int kind, const void *data, Py_ssize_t at, Py_ssize_t n)
{
    Py_ssize_t j = at, end, spaces = 0, slashes = 0;
    PyObject *key, *known;
    Py_UCS4 c;
    int letters = 0;
    if (at >= 2 && at + 1 < n && PyUnicode_READ(kind, data, at) == ':' &&
        (c = PyUnicode_READ(kind, data, at + 1)) >= '0' && c <= '9' &&
        (c = PyUnicode_READ(kind, data, at - 1)) >= '0' && c <= '9' &&
        (c = PyUnicode_READ(kind, data, at - 2)) >= '0' && c <= '9') {
        /* No separator: a ':' between two digits and a third is a time or a ratio
           ("T10:30", "16:9"), and the redactor never judges the key before it, so
           asking would send every line with a timestamp in it to Python. ("token01: x"
           has a key.) */
        return 1;
    }
    while (j > 0 && spaces < 3) {
        c = PyUnicode_READ(kind, data, j - 1);
        if (c != ' ' && c != '\t') {
            break;
        }
        j--;
        spaces++;
    }
    /* A bracket counts right before its separator, or before "=>" ("[password] =>");
       not with space before a plain "=" ("cache[key] = x": code). */
    if (spaces == 0 || (PyUnicode_READ(kind, data, at) == '=' && at + 1 < n &&
                        PyUnicode_READ(kind, data, at + 1) == '>')) {
        if (j >= 3 && PyUnicode_READ(kind, data, j - 1) == 'D' &&
            PyUnicode_READ(kind, data, j - 2) == '5' && PyUnicode_READ(kind, data, j - 3) == '%') {
            /* A URL-encoded form key ("user%5Bpassword%5D="): the redactor reads
               its name, or "5D" when there is none; rare enough to let it. */
            return 0;
        }
        if (j > 0 && PyUnicode_READ(kind, data, j - 1) == ']') {
            /* A bracketed key's last name ("user[password]="): with no name after
               the ']' there is no key, as without the ']'. */
            j--;
        }
    }
    if (j > 0) {
        c = PyUnicode_READ(kind, data, j - 1);
        if (c == '"' || c == '\'') {
            j--;
            /* An escaped quote (JSON inside a JSON string: \"password\": ...), up
               to 15 backslashes (JSON nested 5 deep), as _redact reads it. */
            while (j > 0 && slashes < 15 && PyUnicode_READ(kind, data, j - 1) == '\\') {
                j--;
                slashes++;
            }
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
    if (j > 0 && PyUnicode_READ(kind, data, j - 1) > 127) {
        /* A key read back as ASCII stops at a letter that is not: the redactor's
           patterns match case-insensitively, so "authorızation" (a dotless i) or
           "cooKie" (a Kelvin sign) is their header word, not the plain "zation" or
           "ie" read here (H199). */
        return 0;
    }
    if (!letters) {
        /* No key ("a: b" has one, " : " not), or one without a letter ("request
           42: ...", "10:30"): every secret name has letters (Redactor.is_secret). */
        return 1;
    }
    if (end - j > 2 && end - j < 64 && PyUnicode_READ(kind, data, j) == '5' &&
        PyUnicode_READ(kind, data, j + 1) == 'B') {
        return 0;  /* "a%5Bpin=": the redactor judges "pin" (_redact._key_name) */
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

/* Whether the ASCII ``literal`` stands at ``text[at]`` (of ``n`` characters). */
static int
literal_at(int kind, const void *data, Py_ssize_t at, Py_ssize_t n, const char *literal)
{
    Py_ssize_t j;
    for (j = 0; literal[j] != '\0'; j++) {
        if (at + j >= n || PyUnicode_READ(kind, data, at + j) != (Py_UCS4)literal[j]) {
            return 0;
        }
    }
    return 1;
}

/* Whether 20 characters of an API key follow from ``text[at]`` (_redact._DASH_RUN, or
 * with ``alnum`` _redact._ALNUM_RUN). */
static int
key_run(int kind, const void *data, Py_ssize_t at, Py_ssize_t n, int alnum)
{
    Py_ssize_t j;
    Py_UCS4 c;
    if (at < 0 || at + 20 > n) {
        return 0;
    }
    for (j = at; j < at + 20; j++) {
        c = PyUnicode_READ(kind, data, j);
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (!alnum && (c == '_' || c == '.' || c == '-')))) {
            return 0;
        }
    }
    return 1;
}

/* _redact._key_at at one place: whether an API key's ``word`` ends right before
 * ``text[i]`` (its '-' or '_'), where a key may start (as _key_at asks _key_start:
 * not after a letter or digit, unless an escape's written out: "\\nhf_",
 * "\\u0001hf_"), with 20 characters of it after ``text[i]``. */
static int
key_before(int kind, const void *data, Py_ssize_t i, Py_ssize_t n, const char *word, int alnum)
{
    Py_ssize_t at = i - (Py_ssize_t)strlen(word), j;
    Py_UCS4 c;
    if (at < 0 || !literal_at(kind, data, at, n, word) || !key_run(kind, data, i + 1, n, alnum)) {
        return 0;
    }
    c = at > 0 ? PyUnicode_READ(kind, data, at - 1) : ' ';
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
        return 1;
    }
    /* (A backslash among the 10 characters before: an escape's, "\\U0001f600".) */
    for (j = at - 2; j >= 0 && j >= at - 10; j--) {
        if (PyUnicode_READ(kind, data, j) == '\\') {
            return 1;
        }
    }
    return 0;
}

/* Whether the '-' or '_' at ``text[i]`` is part of a mark _redact._dash_mark finds: a
 * PEM key's "-----BEGIN", a service token's prefix ("ghp_", "github_pat_", "xoxb-",
 * "sk_live_"), a long option, "-p", "-U" (before "-P pw"), an AWS secret key's
 * name ("_access_key") or an API key ("sk-", "glpat-", "pypi-", "hf_", "npm_", "_v1_"
 * and what follows: key_before); or a command line's user option ("-u"), whose value the Python
 * redactor judges (text with one has a ':' for has_trigger). */
static int
dash_mark(int kind, const void *data, Py_ssize_t i, Py_ssize_t n)
{
    Py_UCS4 c;
    if (PyUnicode_READ(kind, data, i) == '-') {
        if (literal_at(kind, data, i, n, "-----BEGIN") || key_before(kind, data, i, n, "sk", 0) ||
            key_before(kind, data, i, n, "glpat", 0) || key_before(kind, data, i, n, "pypi", 0)) {
            return 1;
        }
        /* A command line's "-u user:pw", "--user", "--proxy-user" (cli_credentials):
           its ':' is after a user name the redactor may have found plain; any other
           long option ("--password pw": cli_option judges its name), "-p" (MySQL's
           "-ppw": mysql_password; "-pw pw", "-passin pass:pw") and "-U" (sqlcmd's
           "-U sa -P pw": cli_password). (After any character but a letter or digit:
           the patterns' space, quote or '=' among them, Unicode spaces too.) */
        c = i > 0 ? PyUnicode_READ(kind, data, i - 1) : ' ';
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) &&
            i + 1 < n) {
            c = PyUnicode_READ(kind, data, i + 1);
            if (c == 'u' || c == 'p' || c == 'U') {
                return 1;
            }
            if (c == '-' && i + 2 < n) {
                c = PyUnicode_READ(kind, data, i + 2);
                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
                    return 1;
                }
            }
        }
        c = i >= 4 ? PyUnicode_READ(kind, data, i - 1) : 0;
        return (c == 'a' || c == 'b' || c == 'p' || c == 'o' || c == 's' || c == 'r') &&
               literal_at(kind, data, i - 4, n, "xox");
    }
    c = i >= 3 ? PyUnicode_READ(kind, data, i - 1) : 0;
    if ((c == 'p' || c == 'o' || c == 'u' || c == 's' || c == 'r') &&
        literal_at(kind, data, i - 3, n, "gh")) {
        return 1;
    }
    if ((i >= 6 && literal_at(kind, data, i - 6, n, "github_pat_")) ||
        key_before(kind, data, i, n, "hf", 1) || key_before(kind, data, i, n, "npm", 1) ||
        (literal_at(kind, data, i, n, "_v1_") && key_run(kind, data, i + 4, n, 1))) {
        return 1;
    }
    /* "aws_secret_access_key wJalr..." (aws_secret_option): its name's "_" before
       "access_key", where no ':' or '=' may follow. */
    if (literal_at(kind, data, i, n, "_access_key")
        || literal_at(kind, data, i, n, "_ACCESS_KEY")) {
        return 1;
    }
    c = i >= 2 ? PyUnicode_READ(kind, data, i - 2) : 0;
    return (c == 'r' || c == 's') && PyUnicode_READ(kind, data, i - 1) == 'k' &&
           (literal_at(kind, data, i + 1, n, "live_") || literal_at(kind, data, i + 1, n, "test_"));
}

/* _redact.has_trigger of the text at ``data`` (``n`` characters of PyUnicode
 * ``kind``), narrowed by the redactor's own answers: 1 maybe (the Python redactor,
 * Redactor.text_triggered, decides), 0 certainly nothing to redact (or no text
 * patterns run), -1 error. A '@', "eyJ", an AWS key id's prefix, a PEM key's BEGIN, a
 * service token's or an API key's prefix, an option (dash_mark), a URL-encoded
 * separator, "Auth(" or a chat webhook's path is a trigger, as there. A ':' or '=' is
 * one there, and here only unless the key before it is one the redactor has already
 * found plain (its cache, key_known_plain): text_triggered would change nothing after
 * it, so both paths ship the same bytes (tests/test_speedups.py compares them). */
static int
needs_redaction(Handle *self, int kind, const void *data, Py_ssize_t n)
{
    Py_ssize_t i, k;
    if (self->redact_text == Py_None) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c == ':' || c == '=') {
            int plain = key_known_plain(self, kind, data, i, n);
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
            if (literal_at(kind, data, i, n, "AIza") && key_run(kind, data, i + 4, n, 0)) {
                return 1;  /* (a Google API key: provider_key) */
            }
            for (k = 0; k < (Py_ssize_t)(sizeof aws_prefixes / 3); k++) {
                if (PyUnicode_READ(kind, data, i + 1) == (Py_UCS4)aws_prefixes[k][0] &&
                    PyUnicode_READ(kind, data, i + 2) == (Py_UCS4)aws_prefixes[k][1] &&
                    PyUnicode_READ(kind, data, i + 3) == (Py_UCS4)aws_prefixes[k][2]) {
                    return 1;
                }
            }
        }
        else if ((c == '-' || c == '_') && dash_mark(kind, data, i, n)) {
            return 1;
        }
        else if (c == 'G' && i >= 1 && literal_at(kind, data, i - 1, n, "SG.") &&
                 key_run(kind, data, i + 2, n, 0)) {
            return 1;  /* (a SendGrid key: provider_key) */
        }
        /* A URL-encoded separator ("password%3Dpw", "%3A"; encoded twice: "%253D"),
           an HTTP auth class's "Auth(" (auth_call), a chat webhook's path
           (webhook_url). */
        else if (c == '%' && i + 2 < n) {
            Py_ssize_t at = i + 1;
            if (PyUnicode_READ(kind, data, at) == '2' && i + 4 < n &&
                PyUnicode_READ(kind, data, at + 1) == '5') {
                at += 2;
            }
            if (PyUnicode_READ(kind, data, at) == '3' &&
                ((c = PyUnicode_READ(kind, data, at + 1)) == 'D' || c == 'd' || c == 'A' ||
                 c == 'a')) {
                return 1;
            }
        }
        else if (c == '(' && i >= 4 && literal_at(kind, data, i - 4, n, "Auth")) {
            return 1;
        }
        else if (c == '/' && (literal_at(kind, data, i, n, "/webhook") ||
                              (i >= 15 && literal_at(kind, data, i - 15, n, "hooks.slack.com/")))) {
            return 1;
        }
    }
    return 0;
}

/* Room for the meta meta_json writes; more goes to Python. */
#define META_ROOM 4096

/* ``value`` (a key or a scalar) as orjson.dumps writes it, appended at ``*out`` (up
 * to ``end``): ints that fit 64 bits, booleans, None and ASCII strs needing no
 * escape directly, other strs and floats through ``dumps``. 0, or -1 (maybe an
 * error): not a scalar, or no room; Python decides. */
static int
put_json(Handle *self, PyObject *value, char **out, const char *end)
{
    char *o = *out;
    Py_ssize_t n = 0;
    if (PyUnicode_CheckExact(value) && json_plain_str(value)) {
        n = PyUnicode_GET_LENGTH(value);
        if (end - o < n + 2) {
            return -1;  /* no room: Python writes it */
        }
        *o++ = '"';
        memcpy(o, PyUnicode_DATA(value), n);
        o[n] = '"';
        *out = o + n + 1;
        return 0;
    }
    else if (PyLong_CheckExact(value)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (!overflow && !(v == -1 && PyErr_Occurred()) && end - o >= 20) {
            *out = o + write_int(v, o);
            return 0;
        }
        PyErr_Clear();  /* beyond 64 bits: orjson takes up to 2**64 - 1 */
    }
    else if (value == Py_True || value == Py_False || value == Py_None) {
        const char *word = value == Py_True ? "true" : value == Py_False ? "false" : "null";
        n = (Py_ssize_t)strlen(word);
        if (end - o < n) {
            return -1;
        }
        memcpy(o, word, n);
        *out = o + n;
        return 0;
    }
    else if (!PyFloat_CheckExact(value) && !PyUnicode_CheckExact(value)) {
        return -1;
    }
    PyObject *json = PyObject_CallOneArg(self->dumps, value);  /* add_meta holds value */
    if (json == NULL || !PyBytes_CheckExact(json) || end - o < PyBytes_GET_SIZE(json)) {
        Py_XDECREF(json);
        return -1;
    }
    memcpy(o, PyBytes_AS_STRING(json), PyBytes_GET_SIZE(json));
    *out = o + PyBytes_GET_SIZE(json);
    Py_DECREF(json);
    return 0;
}

/* ``"key":value``, after a comma unless it is the first, for an item that passes
 * Redactor.plain_meta (a key it found safe, a scalar value): 0, else -1 (Python
 * decides). */
static int
add_meta(Handle *self, PyObject *key, PyObject *value, char **out, const char *end, int first)
{
    int result = -1;
    /* Owned (for put_json too): the lookups below, and dumps, must not find them freed
       if anything they run (a str subclass's __eq__, a finalizer) drops them from the
       record or event. */
    Py_INCREF(key);
    Py_INCREF(value);
    if ((self->safe_keys != Py_None && PySet_Contains(self->safe_keys, key) != 1) ||
        /* A string the text patterns may change: the redaction walk does it (and cuts
           one longer than max_line_length + 256 first; 4 * max_chars <= max_line_length). */
        (PyUnicode_CheckExact(value) &&
         (PyUnicode_GET_LENGTH(value) > 4 * self->max_chars ||
          needs_redaction(self, PyUnicode_KIND(value), PyUnicode_DATA(value),
                          PyUnicode_GET_LENGTH(value)) != 0)) ||
        end - *out < 2) {
        goto done;
    }
    if (!first) {
        *(*out)++ = ',';
    }
    if (put_json(self, key, out, end - 1) == 0) {
        *(*out)++ = ':';
        result = put_json(self, value, out, end);
    }
done:
    Py_DECREF(key);
    Py_DECREF(value);
    return result;
}

/* The record's meta as JSON: LineBuilder.meta_json of _queue_record's meta, written
 * as orjson writes the dict; Py_None for no meta; NULL (maybe an error) to leave the
 * record to Python. */
static PyObject *
meta_json(Handle *self, PyObject *attrs)
{
    Py_ssize_t size = PyDict_GET_SIZE(attrs), pos = 0, i;
    PyObject *key, *value, *kind, *json = NULL;
    char buf[META_ROOM], *out = buf + 1;
    const char *end = buf + META_ROOM - 1;  /* room kept for the "}" */
    int count = 0;
    if (size == self->plain_len && PyDict_CheckExact(self->meta_cache) &&
        PyTuple_GET_SIZE(self->record_attrs) == 1) {
        /* The one record attribute alone: its (meta, JSON) as _queue_record keeps them. */
        value = PyDict_GetItemWithError(attrs, PyTuple_GET_ITEM(self->record_attrs, 0));
        if (value == NULL || PyUnicode_CheckExact(value)) {
            json = value != NULL ? PyDict_GetItemWithError(self->meta_cache, value) : NULL;
            json = json != NULL && PyTuple_CheckExact(json) && PyTuple_GET_SIZE(json) == 2
                       ? PyTuple_GET_ITEM(json, 1) : NULL;
            return json != NULL && PyBytes_CheckExact(json) ? Py_NewRef(json) : NULL;
        }
        /* Not text (lineno, process: an int), which the cache never holds: written
           below as any meta is (H199: such records all went to Python). */
    }
    if (size < self->plain_len) {
        return NULL;
    }
    for (i = 0; i < PyTuple_GET_SIZE(self->record_attrs); i++) {
        key = PyTuple_GET_ITEM(self->record_attrs, i);
        value = PyDict_GetItemWithError(attrs, key);
        if (value == NULL ? PyErr_Occurred() != NULL
                          : add_meta(self, key, value, &out, end, count++ == 0) != 0) {
            return NULL;
        }
    }
    /* Extras: what follows the attributes LogRecord.__init__ sets (_extras). */
    for (i = 0; size > self->plain_len && PyDict_Next(attrs, &pos, &key, &value); i++) {
        if (i == self->plain_len - 1 &&
            (!PyUnicode_CheckExact(key) ||
             PyDict_GetItemWithError(self->standard_attrs, key) != Py_True)) {
            return NULL;  /* a filter deleted one __init__ sets: extras sit before the tail */
        }
        if (i < self->plain_len) {
            continue;
        }
        /* True: one __init__ sets, moved here by a filter (extras may sit before it:
           Python decides); False: never meta (the message or asctime a formatter
           added, structlog's _logger or _name: _record.NOT_EXTRAS); absent: an extra. */
        kind = PyUnicode_CheckExact(key) ? PyDict_GetItemWithError(self->standard_attrs, key)
                                         : Py_True;
        if (kind == Py_True || (kind == NULL && PyErr_Occurred()) ||
            (kind == NULL && add_meta(self, key, value, &out, end, count++ == 0) != 0)) {
            return NULL;
        }
    }
    if (count == 0) {
        return Py_NewRef(Py_None);
    }
    buf[0] = '{';
    *out++ = '}';
    return PyBytes_FromStringAndSize(buf, out - buf);
}

#define SIZE(b) PyBytes_GET_SIZE(b)
#define PUT(data, n) (memcpy(out, (data), (n)), out += (n))
#define PUT_BYTES(b) PUT(PyBytes_AS_STRING(b), SIZE(b))

/* ENTRY_HEAD text ENTRY_TIMESTAMP ms level-tail [ENTRY_META meta] ENTRY_END: the
 * text's JSON at ``data`` (``n`` bytes; ``quoted``: with its quotes already, else
 * it needs no escape); NULL (maybe an error) where LineBuilder.entry would not make it. */
static PyObject *
entry_of(Handle *self, const char *data, Py_ssize_t n, int quoted, PyObject *level,
         long long millis, PyObject *meta)
{
    PyObject *entry = NULL, *tail = Py_XNewRef(PyDict_GetItemWithError(self->level_tails, level));
    Py_ssize_t total;
    char digits[24], *out;
    if (tail == NULL || !PyBytes_CheckExact(tail)) {
        goto done;  /* entry() makes and keeps it */
    }
    int n_digits = write_int(millis, digits);
    total = SIZE(self->head) + n + (quoted ? 0 : 2) + SIZE(self->timestamp_key) + n_digits +
            SIZE(tail) + (meta ? SIZE(self->meta_key) + SIZE(meta) : 0) + SIZE(self->end);
    /* entry() leaves longer lines with meta to encode(), which cuts them. */
    if (total > self->max_entry || (entry = PyBytes_FromStringAndSize(NULL, total)) == NULL) {
        goto done;
    }
    out = PyBytes_AS_STRING(entry);
    PUT_BYTES(self->head);
    if (!quoted) {
        *out++ = '"';
    }
    PUT(data, n);
    if (!quoted) {
        *out++ = '"';
    }
    PUT_BYTES(self->timestamp_key);
    PUT(digits, n_digits);
    PUT_BYTES(tail);
    if (meta != NULL) {
        PUT_BYTES(self->meta_key);
        PUT_BYTES(meta);
    }
    PUT_BYTES(self->end);
done:
    Py_XDECREF(tail);
    return entry;
}

/* LineBuilder.entry(text, level, millis, meta, meta's JSON): ``text`` a str, or NULL
 * for the ASCII at ``direct`` (``n`` bytes, format_direct's: nothing to escape); NULL
 * (maybe an error) where entry() would not take its fast path. */
static PyObject *
entry_for(Handle *self, PyObject *text, const char *direct, Py_ssize_t n, PyObject *level,
          long long millis, PyObject *meta)
{
    PyObject *redacted = NULL, *escaped = NULL, *entry = NULL, *str;
    const char *data = direct;
    int ok;
    n = text != NULL ? PyUnicode_GET_LENGTH(text) : n;
    if (n <= 0 || n > self->max_chars) {
        return NULL;
    }
    /* Text that may hold a credential, redacted (the redactor takes a str). */
    ok = text != NULL ? needs_redaction(self, PyUnicode_KIND(text), PyUnicode_DATA(text), n)
                      : needs_redaction(self, PyUnicode_1BYTE_KIND, direct, n);
    if (ok != 0) {
        str = ok < 0 ? NULL
              : text != NULL ? Py_NewRef(text)
              : PyUnicode_FromStringAndSize(direct, n);
        redacted = str == NULL ? NULL : PyObject_CallOneArg(self->redact_text, str);
        Py_XDECREF(str);
        if (redacted == NULL || !PyUnicode_CheckExact(redacted) ||
            (n = PyUnicode_GET_LENGTH(redacted)) > self->max_chars) {
            goto done;  /* an error, or something odd: the Python path decides */
        }
        text = redacted;
    }
    if (text != NULL) {
        data = (const char *)PyUnicode_DATA(text);
        if (!json_plain_str(text)) {
            /* _escape(text).encode(), quotes included; a lone surrogate fails here. */
            escaped = PyObject_CallOneArg(self->escape, text);
            if (escaped == NULL || !PyUnicode_CheckExact(escaped) ||
                (data = PyUnicode_AsUTF8AndSize(escaped, &n)) == NULL) {
                goto done;
            }
        }
    }
    entry = entry_of(self, data, n, escaped != NULL, level, millis, meta);
done:
    Py_XDECREF(redacted);
    Py_XDECREF(escaped);
    return entry;
}

/* _line.millis(seconds) at ``*millis`` where that fits: 1; 0 for NaN, infinities and
 * the like (Python decides). */
static int
millis_of(double seconds, long long *millis)
{
    double ms = seconds * 1000.0;
    *millis = (long long)(ms > -9.2e18 && ms < 9.2e18 ? ms : 0);
    return ms > -9.2e18 && ms < 9.2e18;
}

/* _event._number_millis of ``value``, an exact int or float (epoch seconds, or
 * milliseconds past 1e11): 1 with the time at ``*millis``; 0 where it says None or
 * for a number it would not see as this one (timestamp_of decides then). */
static int
number_millis(PyObject *value, long long *millis)
{
    double number = PyFloat_CheckExact(value) ? PyFloat_AS_DOUBLE(value) : PyLong_AsDouble(value);
    if (!(number > 0 && number < 1e14)) {  /* NaN, infinities, 0, negatives, overflow */
        PyErr_Clear();
        return 0;
    }
    *millis = (long long)(number > 1e11 ? number : number * 1000);
    return 1;
}

/* 1 when no request context is bound (an empty one is the default mapping), where
 * _queue_record and _ship_common test ``_context.in_use`` and ``_context.current()``
 * (and merge any into meta). */
static int
no_context(Handle *self)
{
    PyObject *context = NULL;
    int none = PyContextVar_Get(self->context_var, NULL, &context) == 0 && context != NULL &&
               PyDict_CheckExact(context) && PyDict_GET_SIZE(context) == 0;
    Py_XDECREF(context);
    return none;
}

/* Room for the text format_direct writes; longer ones are formatted the general way. */
#define DIRECT_ROOM 1024

/* LogDNAHandler._queue_record for the common record: its entry, or NULL (maybe an
 * error): Python builds that one. */
static PyObject *
build(Handle *self, PyObject *record)
{
    PyObject *attrs, *text = NULL, *meta = NULL, *entry = NULL, *level, *created;
    char direct[DIRECT_ROOM];
    Py_ssize_t n = 0;
    long long millis;
    if (Py_TYPE(record) != (PyTypeObject *)self->record_type ||
        Py_TYPE(record)->tp_getattro != PyObject_GenericGetAttr) {
        return NULL;
    }
    attrs = PyObject_GenericGetDict(record, NULL);
    if (attrs == NULL || !PyDict_CheckExact(attrs) || may_ship(self, attrs) != 1 ||
        !no_context(self)) {
        goto done;
    }
    /* Meta first: it allocates (which may run a finalizer), and the values read
       from attrs below are borrowed. */
    meta = meta_json(self, attrs);
    if (meta == NULL || (text = text_of(self, attrs, direct, DIRECT_ROOM, &n)) == NULL) {
        goto done;
    }
    /* Owned: the redactor (Python code) runs before its tail is looked up, and a signal
       handler or another thread may give the record a new levelname meanwhile. */
    level = Py_XNewRef(PyDict_GetItemWithError(attrs, s_levelname));
    created = PyDict_GetItemWithError(attrs, s_created);
    if (level != NULL && PyUnicode_CheckExact(level) && created != NULL &&
        PyFloat_CheckExact(created) && millis_of(PyFloat_AS_DOUBLE(created), &millis)) {
        entry = entry_for(self, text == Py_None ? NULL : text, direct, n, level, millis,
                          meta == Py_None ? NULL : meta);
    }
    Py_XDECREF(level);
done:
    Py_XDECREF(attrs);
    Py_XDECREF(text);
    Py_XDECREF(meta);
    return entry;
}

/* -- which events qualify, and their meta: LogDNAProcessor._ship_common --------- */

/* The common event's entry, or NULL (maybe an error): Python ships that one. Run
 * with the thread marked busy (event_entry). */
static PyObject *
common_entry(Handle *self, PyObject *method_name, PyObject *event)
{
    PyObject *text, *raw, *level, *key, *value, *kind, *meta = NULL, *entry = NULL, *got;
    PyObject *stamp = NULL;  /* the timestamp key's value */
    Py_ssize_t pos = 0;
    char buf[META_ROOM], *out = buf + 1;
    const char *end = buf + META_ROOM - 1;  /* room kept for the "}" */
    long long millis = 0;
    int count = 0, stamped = 0;
    /* A str event and a level that passes (``level``, else the method's name; the
       keys are _event.TEXT_KEY and LEVEL_KEY). */
    if ((text = PyDict_GetItemWithError(event, s_event)) == NULL || !PyUnicode_CheckExact(text)) {
        return NULL;
    }
    /* Owned from here, as _ship_common's local holds it: the next lookup may run the
       __eq__ of a key that collides with "level", which may take it out of the event. */
    Py_INCREF(text);
    if ((raw = PyDict_GetItemWithError(event, s_level)) == NULL && PyErr_Occurred()) {
        Py_DECREF(text);
        return NULL;
    }
    raw = raw != NULL ? raw : method_name;
    level = PyUnicode_CheckExact(raw) ? PyDict_GetItemWithError(self->levels, raw) : NULL;
    /* And 1 to max_chars characters, before the timestamp is read (as there). */
    if (level == NULL || PyUnicode_GET_LENGTH(text) == 0 ||
        PyUnicode_GET_LENGTH(text) > self->max_chars) {
        Py_DECREF(text);
        return NULL;
    }
    /* Owned: meta's values go through dumps, and the time through timestamp_of. */
    Py_INCREF(level);
    if (!no_context(self)) {
        goto done;
    }
    /* Meta: every other key in order, none of them a trace or bookkeeping one; a
       timestamp that is a time is the line's, not meta. */
    while (PyDict_Next(event, &pos, &key, &value)) {
        /* Absent: meta; None: the text or level; True: the time; False: Python decides. */
        kind = PyUnicode_CheckExact(key) ? PyDict_GetItemWithError(self->key_kinds, key) : Py_False;
        if (kind == Py_False || (kind == NULL && PyErr_Occurred())) {
            goto done;
        }
        if (kind == Py_True) {
            Py_XSETREF(stamp, Py_NewRef(value));  /* read once the meta is written */
        }
        else if (kind == NULL && add_meta(self, key, value, &out, end, count++ == 0) != 0) {
            goto done;
        }
    }
    if (count > 0) {
        buf[0] = '{';
        *out++ = '}';
        if ((meta = PyBytes_FromStringAndSize(buf, out - buf)) == NULL) {
            goto done;
        }
    }
    /* The time, after the meta, as _ship_common reads it after copying the event
       (timestamp_of may run user code, a float subclass's __float__, which may change
       the event): a number's as _number_millis reads it, anything else's as
       timestamp_of does; without one, _line.now_millis()'s (time.time() read now). */
    if (stamp != NULL && (PyFloat_CheckExact(stamp) || PyLong_CheckExact(stamp))) {
        stamped = number_millis(stamp, &millis);  /* not a time: meta, then (Python decides) */
    }
    else if (stamp != NULL) {
        got = PyObject_CallOneArg(self->timestamp_of, stamp);
        stamped = got != NULL && PyLong_CheckExact(got);
        millis = stamped ? PyLong_AsLongLong(got) : 0;
        stamped = stamped && !PyErr_Occurred();
        Py_XDECREF(got);
    }
    else {
        PyObject *clock = PyObject_GetAttr(self->time_module, s_time);  /* at each call */
        got = clock == NULL ? NULL : PyObject_CallNoArgs(clock);
        stamped = got != NULL && PyFloat_CheckExact(got) &&
                  millis_of(PyFloat_AS_DOUBLE(got), &millis);
        Py_XDECREF(clock);
        Py_XDECREF(got);
    }
    if (stamped) {
        entry = entry_for(self, text, NULL, 0, level, millis, meta);
    }
done:
    Py_DECREF(text);
    Py_DECREF(level);
    Py_XDECREF(stamp);
    Py_XDECREF(meta);
    return entry;
}

/* _process's guard around common_entry (_ship_common): not on a sender thread, nor
 * inside a handler or processor of ours already (Python decides those); the thread
 * marked busy while the entry is built, so that user code it runs (a key's __eq__,
 * a timestamp's __float__, a signal handler) that logs through us takes the nested
 * path. Unmarked before the entry is queued: _queue_built and _process mark it. */
static PyObject *
event_entry(Handle *self, PyObject *method_name, PyObject *event)
{
    PyObject *ident, *entry;
    unsigned long running = PyThread_get_thread_ident();
    int found;
    if (self->levels == NULL || !PyDict_CheckExact(event)) {
        return NULL;
    }
    /* The running thread's ident as an int: the last one's, while the same thread logs. */
    if (self->ident == NULL || PyLong_AsUnsignedLong(self->ident) != running) {
        Py_XSETREF(self->ident, PyLong_FromUnsignedLong(running));
        if (self->ident == NULL) {
            return NULL;
        }
    }
    found = PySet_Contains(self->sender_threads, self->ident);
    found = found == 0 ? PySet_Contains(self->busy_threads, self->ident) : found;
    ident = Py_NewRef(self->ident);  /* another thread's call may replace self->ident */
    if (found != 0 || PySet_Add(self->busy_threads, ident) < 0) {
        Py_DECREF(ident);
        return NULL;
    }
    entry = common_entry(self, method_name, event);
    if (PySet_Discard(self->busy_threads, ident) < 0) {
        Py_CLEAR(entry);
    }
    Py_DECREF(ident);
    return entry;
}

/* -- queueing it: Buffer.put_entry's lock-free protocol ------------------------- */

/* Buffer.put_entry: 1 queued; 0 the locked path must queue it; -1 error (nothing
 * queued). */
static int
put_entry(Handle *self, PyObject *entry, Py_ssize_t size)
{
    PyObject *buffer = Py_XNewRef(self->buffer), *queued = NULL, *limit = NULL, *total;
    long long q, lim;
    int result = -1;
    if (buffer == NULL) {
        return -1;  /* deleted: Python queues it */
    }
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

/* -- the calls: handler.handle(record), processor(logger, method_name, event) --- */

/* The end of both calls: queue ``entry`` (built for ``item``; NULL: none was) and
 * return ``done``; else hand the entry to the owner's locked put (``queue``:
 * full, closed, due to wake the sender, or not started), and what it raises (only
 * a BaseException) is the caller's; else the Python path ``slow`` runs, which
 * builds the line (again) and deals with whatever went wrong, except a
 * BaseException raised while the entry was built (a signal handler's SystemExit
 * or KeyboardInterrupt, in timestamp_of or the redactor): the Python path lets
 * that through, and so does this. */
static PyObject *
finish(Handle *self, PyObject *owner, PyObject *item, PyObject *entry, PyObject *done,
       PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyObject *result = NULL, *bound;
    /* (The size: _buffer.entry_cost.) */
    int queued = entry == NULL ? -1 : put_entry(self, entry, SIZE(entry) + self->entry_overhead);
    if (queued >= 0) {
        self->lines++;
    }
    if (queued == 1) {
        result = Py_NewRef(done);
    }
    else if (queued == 0) {
        PyObject *call[3] = {owner, item, entry};
        result = PyObject_Vectorcall(self->queue, call, 3, NULL);
    }
    else if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_Exception)) {
        result = NULL;  /* the caller's */
    }
    else if (self->slow == NULL) {
        PyErr_SetString(PyExc_TypeError, "the processor was not initialised");
    }
    else {
        PyErr_Clear();
        bound = PyMethod_New(self->slow, owner);
        result = bound == NULL ? NULL : PyObject_Vectorcall(bound, args, nargsf, kwnames);
        Py_XDECREF(bound);
    }
    Py_XDECREF(entry);
    return result;
}

static PyObject *
handle_call(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Handle *self = (Handle *)Py_NewRef(op);  /* owned: a finalizer may drop handler.handle */
    PyObject *entry = NULL, *result;
    if (PyVectorcall_NARGS(nargsf) == 1 && kwnames == NULL) {
        entry = build(self, args[0]);
    }
    result = finish(self, self->handler, entry ? args[0] : NULL, entry, Py_True, args, nargsf,
                    kwnames);
    Py_DECREF(self);
    return result;
}

static PyObject *
event_call(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Handle *self = (Handle *)Py_NewRef(op);
    PyObject *entry = NULL, *result;
    if (PyVectorcall_NARGS(nargsf) == 3 && kwnames == NULL) {
        entry = event_entry(self, args[1], args[2]);
    }
    result = finish(self, op, entry ? args[2] : NULL, entry, entry ? args[2] : NULL, args,
                    nargsf, kwnames);
    Py_DECREF(self);
    return result;
}

/* -- the types: Handle (a handler's handle), EventHandle (LogDNAProcessor's base) -- */

/* ``h``'s objects from the arguments (``format`` and ``kwlist`` name them, then the
 * addresses follow): 0, or -1 with an error set and none held. */
static int
take_pieces(Handle *h, PyObject *args, PyObject *kwds, const char *format, char **kwlist, ...)
{
    va_list addresses;
    int ok;
    va_start(addresses, kwlist);
    ok = PyArg_VaParseTupleAndKeywords(args, kwds, format, kwlist, addresses);
    va_end(addresses);
    if (!ok) {
        /* Nothing was owned yet: forget the borrowed references. */
        memset(&h->slow, 0, offsetof(Handle, plain_len) - offsetof(Handle, slow));
        return -1;
    }
#define OWN(name) Py_XINCREF(h->name);
    HANDLE_OBJECTS(OWN)
#undef OWN
    return 0;
}

/* The pieces both types take, after their own (see _native.pieces). */
#define PIECE_NAMES                                                                       \
    "buffer", "sender_threads", "busy_threads", "context_var", "safe_keys", "dumps",      \
    "escape", "level_tails", "head", "timestamp_key", "meta_key", "end", "max_chars",     \
    "max_entry", "entry_overhead", "redact_text", "secret_cache", NULL
#define PIECE_FORMAT "OO!O!O!OOOO!SSSSnnnOO!"
#define PIECE_ADDRESSES(h)                                                                  \
    &h->buffer, &PySet_Type, &h->sender_threads, &PySet_Type, &h->busy_threads,             \
    &PyContextVar_Type, &h->context_var, &h->safe_keys, &h->dumps, &h->escape,              \
    &PyDict_Type, &h->level_tails, &h->head, &h->timestamp_key, &h->meta_key, &h->end,      \
    &h->max_chars, &h->max_entry, &h->entry_overhead, &h->redact_text, &PyDict_Type,        \
    &h->secret_cache

static PyObject *
handle_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {
        "handler", "slow", "queue", "record_type", "get_message", "default_formatter",
        "skip_names", "record_attrs", "meta_cache", "standard_attrs", "plain_len", PIECE_NAMES,
    };
    Handle *h = (Handle *)type->tp_alloc(type, 0);
    if (h == NULL) {
        return NULL;
    }
    h->vectorcall = handle_call;
    if (take_pieces(h, args, kwds, "$OOOO!OOO!O!OO!n" PIECE_FORMAT, kwlist, &h->handler,
                    &h->slow, &h->queue, &PyType_Type, &h->record_type, &h->get_message,
                    &h->default_formatter, &PyDict_Type, &h->skip_names, &PyTuple_Type,
                    &h->record_attrs, &h->meta_cache, &PyDict_Type, &h->standard_attrs,
                    &h->plain_len, PIECE_ADDRESSES(h)) != 0) {
        Py_DECREF(h);
        return NULL;
    }
    return (PyObject *)h;
}

/* LogDNAProcessor(**options): made here, armed by its __init__ (event_init). */
static PyObject *
event_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Handle *h = (Handle *)type->tp_alloc(type, 0);
    if (h != NULL) {
        h->vectorcall = event_call;
    }
    return (PyObject *)h;
}


/* ``slow`` and ``queue`` always (a call without them raises TypeError); the rest only
 * where the C code is to build events. */
static int
event_init(PyObject *op, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {
        "slow", "queue", "levels", "key_kinds", "time", "timestamp_of", PIECE_NAMES,
    };
    Handle *h = (Handle *)op;
    /* Once: a call under way (user code it runs, or another thread's while this one
       runs Python code) holds borrowed pieces. A first __init__ that failed left none. */
    if (h->slow != NULL) {
        PyErr_SetString(PyExc_TypeError, "the processor is initialised already");
        return -1;
    }
    return take_pieces(h, args, kwds, "|$OOO!O!OO" PIECE_FORMAT, kwlist, &h->slow, &h->queue,
                       &PyDict_Type, &h->levels, &PyDict_Type, &h->key_kinds, &h->time_module,
                       &h->timestamp_of, PIECE_ADDRESSES(h));
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

static PyMemberDef handle_members[] = {
    /* Set by the Python code to a forked child's new buffer (_queue_built). */
    {"buffer", Py_T_OBJECT_EX, offsetof(Handle, buffer), 0, "The buffer entries go to."},
    {"lines", Py_T_PYSSIZET, offsetof(Handle, lines), Py_READONLY, "Entries built here."},
    {NULL, 0, 0, 0, NULL},
};

/* The same, under private names: they are LogDNAProcessor's attributes too. */
static PyMemberDef event_members[] = {
    {"_native_buffer", Py_T_OBJECT_EX, offsetof(Handle, buffer), 0, "The buffer entries go to."},
    {"_native_lines", Py_T_PYSSIZET, offsetof(Handle, lines), Py_READONLY, "Entries built here."},
    {NULL, 0, 0, 0, NULL},
};

#define HANDLE_TYPE_SLOTS                                                       \
    .tp_basicsize = sizeof(Handle), .tp_dealloc = (destructor)handle_dealloc,  \
    .tp_traverse = (traverseproc)handle_traverse, .tp_clear = (inquiry)handle_clear, \
    .tp_call = PyVectorcall_Call, .tp_vectorcall_offset = offsetof(Handle, vectorcall)

static PyTypeObject HandleType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "logdna_client._speedups.Handle",
    .tp_doc = "handle(record) for one LogDNAHandler: its common record in C (see _handler.py).",
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = handle_new,
    .tp_members = handle_members,
    HANDLE_TYPE_SLOTS,
};

/* A base class: LogDNAProcessor's instances are called straight into C, with no
 * Python frame before the common event's work (see structlog.py). */
static PyTypeObject EventHandleType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "logdna_client._speedups.EventHandle",
    .tp_doc = "LogDNAProcessor's call: the common structlog event in C (see structlog.py).",
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
                Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = event_new,
    .tp_init = event_init,
    .tp_members = event_members,
    HANDLE_TYPE_SLOTS,
};

/* -- the garbage collector's hook: _threads.gc_hook ------------------------------ */

/* ``on_senders(senders, target, phase, info)``, for gc.callbacks (bound by a
 * functools.partial): ``target(phase, info)`` on a thread in ``senders``, nothing on any
 * other. No Python code runs then, on the main thread above all: a signal that came
 * during the collection has its handler run at a Python function's start, inside the
 * collection, which swallows what the handler raises (Ctrl-C's KeyboardInterrupt was
 * lost while any sender ran). Python's handlers run on the main thread only. */
static PyObject *
on_senders(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyAnySet_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "on_senders(senders: set, target, phase, info)");
        return NULL;
    }
    PyObject *ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    if (ident == NULL) {
        return NULL;
    }
    int found = PySet_Contains(args[0], ident);
    Py_DECREF(ident);
    if (found <= 0) {
        return found < 0 ? NULL : Py_NewRef(Py_None);
    }
    return PyObject_Vectorcall(args[1], args + 2, 2, NULL);
}

static PyMethodDef speedups_methods[] = {
    {"on_senders", (PyCFunction)(void (*)(void))on_senders, METH_FASTCALL,
     "on_senders(senders, target, phase, info): target(phase, info) on a sender thread only."},
    {NULL, NULL, 0, NULL},
};

/* -- the module: multi-phase initialisation ------------------------------------- */

static int
speedups_exec(PyObject *module)
{
    /* Process-wide and kept once made: a second load of the module reuses them. */
#define INTERN(name)                                                                  \
    if (s_##name == NULL && (s_##name = PyUnicode_InternFromString(#name)) == NULL) { \
        return -1;                                                                    \
    }
    NAMES(INTERN)
#undef INTERN
    if (PyType_Ready(&HandleType) < 0 || PyType_Ready(&EventHandleType) < 0 ||
        PyModule_AddIntConstant(module, "API", SPEEDUPS_API) < 0 ||
        PyModule_AddObjectRef(module, "Handle", (PyObject *)&HandleType) < 0 ||
        PyModule_AddObjectRef(module, "EventHandle", (PyObject *)&EventHandleType) < 0) {
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
    .m_doc = "The common record and structlog event in C; optional (see _native.py).",
    .m_size = 0,
    .m_methods = speedups_methods,
    .m_slots = speedups_slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}

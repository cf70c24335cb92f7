/*
 * PhantomBuster webhook payload validation.  See pb_payload.h.
 */

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pb_payload.h"


/*
 * jansson recurses once per nesting level and accepts up to 2048 levels;
 * a cheap scan first keeps hostile bodies from costing that much stack
 * and time.  Brackets inside strings do not count.
 */
int
pb_json_depth_exceeds(const char *data, size_t len, int max_depth)
{
    int     depth = 0, in_string = 0;
    size_t  i;

    for (i = 0; i < len; i++) {
        char  ch = data[i];

        if (in_string) {
            if (ch == '\\') {
                i++;
            } else if (ch == '"') {
                in_string = 0;
            }
            continue;
        }

        switch (ch) {
        case '"':
            in_string = 1;
            break;
        case '{':
        case '[':
            if (++depth > max_depth) {
                return 1;
            }
            break;
        case '}':
        case ']':
            depth--;
            break;
        }
    }

    return 0;
}


int
pb_id_char_ok(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
           || (ch >= '0' && ch <= '9')
           || ch == '_' || ch == '-' || ch == '.' || ch == ':';
}


/* ids end up in Redis key names and log lines: keep them plain */
static int
pb_id_text_ok(const char *s, size_t n)
{
    size_t  i;

    if (n == 0 || n > PB_ID_MAX_LEN) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        if (!pb_id_char_ok((unsigned char) s[i])) {
            return 0;
        }
    }

    return 1;
}


int
pb_id_from_json(const json_t *value, char out[PB_ID_MAX_LEN + 1])
{
    const char  *s;
    size_t       n;

    if (json_is_integer(value)) {
        json_int_t  v = json_integer_value(value);

        if (v < 0) {
            return -1;
        }

        snprintf(out, PB_ID_MAX_LEN + 1, "%" JSON_INTEGER_FORMAT, v);
        return 0;
    }

    if (!json_is_string(value)) {
        return -1;
    }

    s = json_string_value(value);
    n = json_string_length(value);

    if (!pb_id_text_ok(s, n)) {
        return -1;
    }

    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}


/* The fields both validators look at, in the order they are checked. */
enum {
    PB_FIELD_CONTAINER_ID = 0,
    PB_FIELD_AGENT_ID,
    PB_FIELD_EXIT_CODE,
    PB_FIELD_EXIT_MESSAGE,
    PB_PAYLOAD_FIELDS
};

static const struct {
    const char  *name;
    const char  *missing;
    const char  *invalid;
} pb_payload_fields[PB_PAYLOAD_FIELDS] = {
    { "containerId", "missing containerId",
      "containerId must be a non-empty id string or an integer" },
    { "agentId", "missing agentId",
      "agentId must be a non-empty id string or an integer" },
    { "exitCode", "missing exitCode", "exitCode must be an integer" },
    { "exitMessage", "missing exitMessage", "exitMessage must be a string" },
};


int
pb_payload_check(json_t *root, pb_payload_t *payload, const char **reason)
{
    int      i, ok;
    json_t  *v;

    if (!json_is_object(root)) {
        *reason = "payload must be a json object";
        return -1;
    }

    for (i = 0; i < PB_PAYLOAD_FIELDS; i++) {
        v = json_object_get(root, pb_payload_fields[i].name);
        if (v == NULL) {
            *reason = pb_payload_fields[i].missing;
            return -1;
        }

        switch (i) {
        case PB_FIELD_CONTAINER_ID:
        case PB_FIELD_AGENT_ID:
            ok = pb_id_from_json(v, i == PB_FIELD_AGENT_ID
                                    ? payload->agent_id
                                    : payload->container_id) == 0;
            break;
        case PB_FIELD_EXIT_CODE:
            ok = json_is_integer(v);
            payload->exit_code = json_integer_value(v);
            break;
        default:
            ok = json_is_string(v);
            payload->exit_message = json_string_value(v);
            payload->exit_message_len = json_string_length(v);
        }

        if (!ok) {
            *reason = pb_payload_fields[i].invalid;
            return -1;
        }
    }

    payload->root = json_incref(root);

    return 0;
}


/*
 * pb_payload_parse is a single-pass scanner over the bytes.
 *
 * jansson builds a tree of the whole body, the big resultObject string
 * included, only for the module to read four fields of it: that was half
 * of an nginx worker's CPU.  The scanner checks the same rules
 * (pb_payload.h) in place and remembers where the four top-level values
 * are.  Strings are validated as they are scanned; the few the rules look
 * into (keys, ids, exitMessage) are decoded afterwards by pb_json_char,
 * which can therefore trust them.
 */

/* Keys a payload may have before the duplicate table leaves the stack. */
#define PB_SCAN_KEYS        32

/* Significant digits enough to round any real next to DBL_MAX exactly. */
#define PB_SCAN_REAL_DIGITS 320

#define pb_is_digit(c)      ((c) >= '0' && (c) <= '9')
#define pb_is_ws(c)         ((c) == ' ' || (c) == '\t' || (c) == '\n'     \
                             || (c) == '\r')

enum {
    PB_VALUE_NONE = 0,
    PB_VALUE_STRING,
    PB_VALUE_INTEGER,
    PB_VALUE_OTHER
};

typedef struct {
    int          type;
    size_t       at;                /* string: its first byte after the
                                       quote; integer: its first digit */
    size_t       len;               /* integer: its digits */
    json_int_t   integer;
} pb_scan_value_t;

typedef struct {
    size_t       object;            /* offset of the object's '{' */
    size_t       at;                /* the key's first byte; 0: free slot */
    uint32_t     hash;
} pb_scan_key_t;

typedef struct {
    const unsigned char  *data;
    size_t                pos;
    size_t                len;
    const char           *reason;

    int                   depth;
    size_t                open[PB_PAYLOAD_MAX_DEPTH + 1];
    unsigned char         close[PB_PAYLOAD_MAX_DEPTH + 1];

    int                   field;    /* top-level field whose value comes
                                       next, or -1 */
    pb_scan_value_t       fields[PB_PAYLOAD_FIELDS];

    json_int_t            integer;  /* the last number, when an integer */
    size_t                digits;   /* its first digit */

    pb_scan_key_t        *keys;
    size_t                nkeys;
    size_t                cap;
    pb_scan_key_t         local[PB_SCAN_KEYS];
} pb_scan_t;


static int
pb_scan_fail(pb_scan_t *s, const char *reason)
{
    s->reason = reason;
    return -1;
}


/* Length of the valid UTF-8 sequence at p (2 to 4), or 0. */
static size_t
pb_utf8_len(const unsigned char *p, size_t avail)
{
    size_t         n, i;
    unsigned char  c = p[0], lo = 0x80, hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        lo = c == 0xe0 ? 0xa0 : lo;         /* overlong */
        hi = c == 0xed ? 0x9f : hi;         /* UTF-16 surrogates */

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        lo = c == 0xf0 ? 0x90 : lo;         /* overlong */
        hi = c == 0xf4 ? 0x8f : hi;         /* beyond U+10FFFF */

    } else {
        return 0;
    }

    if (avail < n || p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }

    return n;
}


/* The unexpected byte at s->pos: jansson checks UTF-8 before tokens. */
static int
pb_scan_unexpected(pb_scan_t *s, const char *reason)
{
    if (s->data[s->pos] >= 0x80
        && pb_utf8_len(s->data + s->pos, s->len - s->pos) == 0)
    {
        reason = "invalid utf-8";
    }

    return pb_scan_fail(s, reason);
}


static int
pb_scan_ws(pb_scan_t *s)
{
    while (s->pos < s->len && pb_is_ws(s->data[s->pos])) {
        s->pos++;
    }

    return s->pos < s->len ? 0 : pb_scan_fail(s, "truncated json");
}


static long
pb_hex4(const unsigned char *p)
{
    long  v = 0;
    int   i;

    for (i = 0; i < 4; i++) {
        unsigned char  c = p[i];

        v <<= 4;

        if (pb_is_digit(c)) {
            v |= c - '0';
        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            v |= (c | 0x20) - 'a' + 10;
        } else {
            return -1;
        }
    }

    return v;
}


/*
 * Skips the bytes from i that need no second look inside a string: ASCII,
 * not a control character, not '"' and not '\\'.  Eight at a time while
 * none of the eight is one of those (the usual has-zero-byte and
 * has-byte-less-than tricks on a 64-bit word: exact as "any of them"),
 * then one at a time up to the first that is.
 */
static size_t
pb_scan_plain(const unsigned char *d, size_t i, size_t end)
{
    uint64_t         w, lt, q, b;
    const uint64_t   ones = 0x0101010101010101ULL;
    const uint64_t   high = 0x8080808080808080ULL;

    while (end - i >= 8) {
        memcpy(&w, d + i, 8);

        lt = (w - ones * 0x20) & ~w;
        q = w ^ (ones * '"');
        q = (q - ones) & ~q;
        b = w ^ (ones * '\\');
        b = (b - ones) & ~b;

        if ((lt | q | b | w) & high) {
            break;
        }

        i += 8;
    }

    while (i < end && d[i] >= 0x20 && d[i] < 0x80 && d[i] != '"'
           && d[i] != '\\')
    {
        i++;
    }

    return i;
}


/* A string whose opening quote is behind s->pos; leaves s->pos past it. */
static int
pb_scan_string(pb_scan_t *s)
{
    long                  cp, lo;
    size_t                i = s->pos, end = s->len, n;
    unsigned char         c;
    const unsigned char  *d = s->data;

    for ( ;; ) {
        i = pb_scan_plain(d, i, end);

        if (i == end) {
            return pb_scan_fail(s, "truncated json");
        }

        c = d[i];

        if (c == '"') {
            s->pos = i + 1;
            return 0;
        }

        if (c < 0x20) {
            return pb_scan_fail(s, "invalid json");
        }

        if (c >= 0x80) {
            n = pb_utf8_len(d + i, end - i);
            if (n == 0) {
                return pb_scan_fail(s, "invalid utf-8");
            }
            i += n;
            continue;
        }

        if (end - i < 2) {
            return pb_scan_fail(s, "truncated json");
        }

        c = d[i + 1];

        switch (c) {
        case '"': case '\\': case '/': case 'b':
        case 'f': case 'n': case 'r': case 't':
            i += 2;
            continue;
        case 'u':
            break;
        default:
            return pb_scan_fail(s, "invalid json");
        }

        if (end - i < 6) {
            return pb_scan_fail(s, "invalid json");
        }

        cp = pb_hex4(d + i + 2);
        i += 6;

        if (cp < 0 || (cp >= 0xdc00 && cp <= 0xdfff)) {
            return pb_scan_fail(s, "invalid json");
        }

        if (cp == 0) {
            return pb_scan_fail(s, "nul character in string");
        }

        if (cp >= 0xd800 && cp <= 0xdbff) {
            lo = (end - i >= 6 && d[i] == '\\' && d[i + 1] == 'u')
                 ? pb_hex4(d + i + 2) : -1;

            if (lo < 0xdc00 || lo > 0xdfff) {
                return pb_scan_fail(s, "invalid json");
            }
            i += 6;
        }
    }
}


/*
 * Decodes the character at *pos of a scanned string into out (UTF-8) and
 * returns its length; 0 at the closing quote.
 */
static size_t
pb_json_char(const unsigned char *d, size_t *pos, unsigned char out[4])
{
    long           cp;
    unsigned char  c = d[*pos];

    if (c == '"') {
        return 0;
    }

    if (c != '\\') {
        out[0] = c;
        *pos += 1;
        return 1;
    }

    c = d[*pos + 1];
    *pos += 2;

    switch (c) {
    case 'b': out[0] = '\b'; return 1;
    case 'f': out[0] = '\f'; return 1;
    case 'n': out[0] = '\n'; return 1;
    case 'r': out[0] = '\r'; return 1;
    case 't': out[0] = '\t'; return 1;
    case 'u': break;
    default:  out[0] = c;    return 1;
    }

    cp = pb_hex4(d + *pos);
    *pos += 4;

    if (cp >= 0xd800 && cp <= 0xdbff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (pb_hex4(d + *pos + 2) - 0xdc00);
        *pos += 6;
    }

    if (cp < 0x80) {
        out[0] = (unsigned char) cp;
        return 1;
    }

    if (cp < 0x800) {
        out[0] = (unsigned char) (0xc0 | (cp >> 6));
        out[1] = (unsigned char) (0x80 | (cp & 0x3f));
        return 2;
    }

    if (cp < 0x10000) {
        out[0] = (unsigned char) (0xe0 | (cp >> 12));
        out[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        out[2] = (unsigned char) (0x80 | (cp & 0x3f));
        return 3;
    }

    out[0] = (unsigned char) (0xf0 | (cp >> 18));
    out[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
    out[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
    out[3] = (unsigned char) (0x80 | (cp & 0x3f));
    return 4;
}


/* A scanned string as a stream of its decoded bytes. */
typedef struct {
    const unsigned char  *data;
    size_t                pos;
    size_t                n;
    size_t                k;
    unsigned char         buf[4];
} pb_str_reader_t;


static int
pb_str_byte(pb_str_reader_t *r)
{
    if (r->k == r->n) {
        r->n = pb_json_char(r->data, &r->pos, r->buf);
        r->k = 0;

        if (r->n == 0) {
            return -1;
        }
    }

    return r->buf[r->k++];
}


/*
 * Decodes the string at `at` into buf (cap bytes at most, then a NUL) and
 * returns its whole decoded length; *hash gets its FNV-1a hash.
 */
static size_t
pb_str_copy(const unsigned char *d, size_t at, char *buf, size_t cap,
    uint32_t *hash)
{
    size_t         n = 0, pos = at, k, j;
    uint32_t       h = 2166136261u;
    unsigned char  out[4];

    /* most bytes are themselves: only an escape needs pb_json_char() */

    while (d[pos] != '"') {
        if (d[pos] != '\\') {
            out[0] = d[pos++];
            k = 1;

        } else {
            k = pb_json_char(d, &pos, out);
        }

        for (j = 0; j < k; j++) {
            if (n < cap) {
                buf[n] = (char) out[j];
            }
            n++;
            h = (h ^ (uint32_t) out[j]) * 16777619u;
        }
    }

    buf[n < cap ? n : cap] = '\0';

    if (hash != NULL) {
        *hash = h;
    }

    return n;
}


static int
pb_str_equal(const unsigned char *d, size_t a, size_t b)
{
    int              c;
    pb_str_reader_t  ra = { d, a, 0, 0, { 0 } }, rb = { d, b, 0, 0, { 0 } };

    do {
        c = pb_str_byte(&ra);
        if (c != pb_str_byte(&rb)) {
            return 0;
        }
    } while (c >= 0);

    return 1;
}


/* The slot of (object, key): a free one, or that of an equal key. */
static pb_scan_key_t *
pb_scan_slot(pb_scan_key_t *keys, size_t cap, const unsigned char *d,
    size_t object, size_t at, uint32_t hash)
{
    size_t  i, mask = cap - 1;

    for (i = (hash ^ (uint32_t) object * 0x9e3779b1u) & mask; ;
         i = (i + 1) & mask)
    {
        if (keys[i].at == 0
            || (keys[i].hash == hash && keys[i].object == object
                && pb_str_equal(d, keys[i].at, at)))
        {
            return &keys[i];
        }
    }
}


/* Only payloads with many keys get here: the table leaves the stack. */
static int
pb_scan_keys_grow(pb_scan_t *s)
{
    size_t          i, cap = s->cap * 4;
    pb_scan_key_t  *keys, *k;

    keys = calloc(cap, sizeof(pb_scan_key_t));
    if (keys == NULL) {
        return pb_scan_fail(s, "out of memory");
    }

    for (i = 0; i < s->cap; i++) {
        if (s->keys[i].at != 0) {
            k = pb_scan_slot(keys, cap, s->data, s->keys[i].object,
                             s->keys[i].at, s->keys[i].hash);
            *k = s->keys[i];
        }
    }

    if (s->keys != s->local) {
        free(s->keys);
    }

    s->keys = keys;
    s->cap = cap;

    return 0;
}


/* A key of the innermost object; its opening quote is behind s->pos. */
static int
pb_scan_key(pb_scan_t *s)
{
    int             i;
    char            name[16];
    size_t          at = s->pos, n;
    uint32_t        hash;
    pb_scan_key_t  *k;

    if (pb_scan_string(s) != 0) {
        return -1;
    }

    n = pb_str_copy(s->data, at, name, sizeof(name) - 1, &hash);

    if (4 * (s->nkeys + 1) > 3 * s->cap && pb_scan_keys_grow(s) != 0) {
        return -1;
    }

    k = pb_scan_slot(s->keys, s->cap, s->data, s->open[s->depth], at, hash);
    if (k->at != 0) {
        return pb_scan_fail(s, "duplicate key");
    }

    k->object = s->open[s->depth];
    k->at = at;
    k->hash = hash;
    s->nkeys++;

    if (s->depth == 1 && n < sizeof(name)) {
        for (i = 0; i < PB_PAYLOAD_FIELDS; i++) {
            if (name[0] == pb_payload_fields[i].name[0]
                && strcmp(name, pb_payload_fields[i].name) == 0)
            {
                s->field = i;
            }
        }
    }

    return 0;
}


/*
 * jansson refuses a real that strtod rounds to infinity.  Only a number
 * whose first significant digit stands for 10^308 needs strtod itself:
 * fed the first PB_SCAN_REAL_DIGITS of them, enough because the
 * rounding threshold is an integer of 309 digits.
 */
static int
pb_scan_real(pb_scan_t *s, size_t at, size_t int_len, size_t end, long exp)
{
    char                  buf[PB_SCAN_REAL_DIGITS + 16], *p;
    size_t                i, k;
    long long             e;
    const unsigned char  *d = s->data;

    /* the first significant digit, k-th of the integer and fraction */
    for (i = at, k = 0; i < end; i++) {
        if (d[i] == '.') {
            continue;
        }
        if (!pb_is_digit(d[i])) {
            return 0;
        }
        if (d[i] != '0') {
            break;
        }
        k++;
    }

    if (i == end) {
        return 0;
    }

    e = (long long) int_len - 1 - (long long) k + exp;

    if (e != 308) {
        return e > 308 ? pb_scan_fail(s, "number out of range") : 0;
    }

    p = buf;
    *p++ = '0';
    *p++ = '.';

    for ( ; i < end && p < buf + 2 + PB_SCAN_REAL_DIGITS; i++) {
        if (pb_is_digit(d[i])) {
            *p++ = (char) d[i];
        } else if (d[i] != '.') {
            break;
        }
    }

    memcpy(p, "e309", 5);

    return isinf(strtod(buf, NULL)) ? pb_scan_fail(s, "number out of range")
                                    : 0;
}


/*
 * A number at s->pos.  Integers (no fraction, no exponent) must fit
 * json_int_t, as jansson's strtoll does.
 */
static int
pb_scan_number(pb_scan_t *s, int *integer)
{
    int                   neg = 0, exp_neg = 0;
    long                  exp = 0;
    size_t                i = s->pos, end = s->len, at, int_len, n;
    uint64_t              u = 0;
    const unsigned char  *d = s->data;

    if (d[i] == '-') {
        neg = 1;
        i++;
    }

    at = i;

    if (i < end && d[i] == '0') {
        i++;

    } else if (i < end && pb_is_digit(d[i])) {
        while (i < end && pb_is_digit(d[i])) {
            i++;
        }

    } else {
        s->pos = i;
        return pb_scan_fail(s, i < end ? "invalid json" : "truncated json");
    }

    int_len = i - at;
    *integer = 1;

    if (i < end && d[i] == '.') {
        *integer = 0;
        n = ++i;
        while (i < end && pb_is_digit(d[i])) {
            i++;
        }
        if (i == n) {
            return pb_scan_fail(s, "invalid json");
        }
    }

    n = i;

    if (i < end && (d[i] == 'e' || d[i] == 'E')) {
        *integer = 0;
        i++;
        if (i < end && (d[i] == '+' || d[i] == '-')) {
            exp_neg = d[i] == '-';
            i++;
        }
        if (i == end || !pb_is_digit(d[i])) {
            return pb_scan_fail(s, "invalid json");
        }
        for ( ; i < end && pb_is_digit(d[i]); i++) {
            /* saturates: beyond 10^8 the verdict no longer changes */
            exp = exp < 100000000 ? exp * 10 + (d[i] - '0') : exp;
        }
    }

    s->pos = i;

    if (!*integer) {
        return pb_scan_real(s, at, int_len, n, exp_neg ? -exp : exp);
    }

    if (int_len > 19) {
        return pb_scan_fail(s, "number out of range");
    }

    for (i = at; i < at + int_len; i++) {
        u = u * 10 + (uint64_t) (d[i] - '0');
    }

    if (u > (uint64_t) LLONG_MAX + (uint64_t) neg) {
        return pb_scan_fail(s, "number out of range");
    }

    /* -(LLONG_MAX + 1) without overflowing on the way */
    s->integer = neg ? -(json_int_t) (u - (uint64_t) (u > 0)) - (u > 0)
                     : (json_int_t) u;
    s->digits = at;

    return 0;
}


/* The whole text: one value, whitespace around it. */
static int
pb_scan(pb_scan_t *s)
{
    int                   integer;
    size_t                n;
    unsigned char         c;
    const char           *lit;
    pb_scan_value_t      *v;
    const unsigned char  *d = s->data;

value:

    if (pb_scan_ws(s) != 0) {
        return -1;
    }

    v = s->field >= 0 ? &s->fields[s->field] : NULL;
    s->field = -1;
    c = d[s->pos];

    if (c == '"') {
        s->pos++;
        if (v != NULL) {
            v->type = PB_VALUE_STRING;
            v->at = s->pos;
        }
        if (pb_scan_string(s) != 0) {
            return -1;
        }
        goto next;
    }

    if (c == '-' || pb_is_digit(c)) {
        if (pb_scan_number(s, &integer) != 0) {
            return -1;
        }
        if (v != NULL) {
            v->type = integer ? PB_VALUE_INTEGER : PB_VALUE_OTHER;
            v->at = s->digits;
            v->len = s->pos - s->digits;
            v->integer = s->integer;
        }
        goto next;
    }

    if (v != NULL) {
        v->type = PB_VALUE_OTHER;
    }

    if (c == '{' || c == '[') {
        if (s->depth == PB_PAYLOAD_MAX_DEPTH) {
            return pb_scan_fail(s, "json nested too deeply");
        }

        s->depth++;
        s->open[s->depth] = s->pos;
        s->close[s->depth] = c == '{' ? '}' : ']';
        s->pos++;

        if (pb_scan_ws(s) != 0) {
            return -1;
        }

        if (d[s->pos] == s->close[s->depth]) {
            s->pos++;
            s->depth--;
            goto next;
        }

        if (c == '[') {
            goto value;
        }

        goto key;
    }

    lit = c == 't' ? "true" : c == 'f' ? "false" : c == 'n' ? "null" : NULL;

    if (lit == NULL) {
        return pb_scan_unexpected(s, "invalid json");
    }

    n = strlen(lit);
    if (s->len - s->pos < n || memcmp(d + s->pos, lit, n) != 0) {
        return pb_scan_fail(s, "invalid json");
    }
    s->pos += n;

next:

    if (s->depth == 0) {
        while (s->pos < s->len && pb_is_ws(d[s->pos])) {
            s->pos++;
        }

        return s->pos == s->len
               ? 0 : pb_scan_unexpected(s, "trailing data after json");
    }

    if (pb_scan_ws(s) != 0) {
        return -1;
    }

    c = d[s->pos];

    if (c == s->close[s->depth]) {
        s->pos++;
        s->depth--;
        goto next;
    }

    if (c != ',') {
        return pb_scan_unexpected(s, "invalid json");
    }

    s->pos++;

    if (s->close[s->depth] == ']') {
        goto value;
    }

    if (pb_scan_ws(s) != 0) {
        return -1;
    }

key:

    if (d[s->pos] != '"') {
        return pb_scan_unexpected(s, "invalid json");
    }

    s->pos++;

    if (pb_scan_key(s) != 0 || pb_scan_ws(s) != 0) {
        return -1;
    }

    if (d[s->pos] != ':') {
        return pb_scan_unexpected(s, "invalid json");
    }

    s->pos++;
    goto value;
}


/* An id field's value, with pb_id_from_json's rules. */
static int
pb_scan_id(const pb_scan_t *s, const pb_scan_value_t *v,
    char out[PB_ID_MAX_LEN + 1])
{
    size_t  n;

    if (v->type == PB_VALUE_INTEGER) {
        if (v->integer < 0) {
            return -1;
        }

        /* the digits as sent are "%lld" of the value, but for -0 */
        n = v->integer == 0 ? 1 : v->len;
        memcpy(out, v->integer == 0 ? "0" : (const char *) s->data + v->at,
               n);
        out[n] = '\0';
        return 0;
    }

    if (v->type != PB_VALUE_STRING) {
        return -1;
    }

    n = pb_str_copy(s->data, v->at, out, PB_ID_MAX_LEN, NULL);

    return pb_id_text_ok(out, n) ? 0 : -1;
}


int
pb_payload_parse(const char *data, size_t len, pb_payload_t *payload,
    const char **reason)
{
    int                     rc, i;
    pb_scan_t               s;
    const pb_scan_value_t  *v;

    memset(payload, 0, sizeof(*payload));

    if (len == 0) {
        *reason = "empty body";
        return -1;
    }

    memset(&s, 0, sizeof(s));
    s.data = (const unsigned char *) data;
    s.len = len;
    s.field = -1;
    s.keys = s.local;
    s.cap = PB_SCAN_KEYS;

    rc = pb_scan(&s);

    if (s.keys != s.local) {
        free(s.keys);
    }

    if (rc != 0) {
        *reason = s.reason;
        return -1;
    }

    /* the first byte that is not whitespace opened the value */
    for (i = 0; pb_is_ws(s.data[i]); i++) { /* void */ }

    if (s.data[i] != '{') {
        *reason = "payload must be a json object";
        return -1;
    }

    for (i = 0; i < PB_PAYLOAD_FIELDS; i++) {
        v = &s.fields[i];

        if (v->type == PB_VALUE_NONE) {
            *reason = pb_payload_fields[i].missing;
            return -1;
        }

        switch (i) {
        case PB_FIELD_CONTAINER_ID:
        case PB_FIELD_AGENT_ID:
            rc = pb_scan_id(&s, v, i == PB_FIELD_AGENT_ID
                                   ? payload->agent_id
                                   : payload->container_id);
            break;
        case PB_FIELD_EXIT_CODE:
            rc = v->type == PB_VALUE_INTEGER ? 0 : -1;
            payload->exit_code = v->integer;
            break;
        default:
            rc = v->type == PB_VALUE_STRING ? 0 : -1;
            if (rc == 0) {
                payload->exit_message_len = pb_str_copy(
                    s.data, v->at, payload->exit_message_buf,
                    PB_EXIT_MESSAGE_MAX, NULL);
                payload->exit_message = payload->exit_message_buf;
            }
        }

        if (rc != 0) {
            *reason = pb_payload_fields[i].invalid;
            memset(payload, 0, sizeof(*payload));
            return -1;
        }
    }

    return 0;
}


void
pb_payload_free(pb_payload_t *payload)
{
    json_decref(payload->root);
    payload->root = NULL;
    payload->exit_message = NULL;
}


int
pb_payload_succeeded(const pb_payload_t *payload)
{
    return payload->exit_code == 0
           && payload->exit_message != NULL
           && strcmp(payload->exit_message, "finished") == 0;
}

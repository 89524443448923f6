#include <math.h>
#include "base/strbuf.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

void strbuf_put(StrBuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (b->len + n + 1 > cap) cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) gemc_fatal("out of memory");
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void strbuf_puts(StrBuf *b, const char *s) {
    strbuf_put(b, s, strlen(s));
}

void strbuf_printf(StrBuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    char *buf = mallocCheck((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(buf, (size_t)n + 1, fmt, ap);
    va_end(ap);
    strbuf_put(b, buf, (size_t)n);
    free(buf);
}

void strbuf_json_string(StrBuf *b, const char *s) {
    strbuf_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            strbuf_put(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            strbuf_put(b, esc, 6);
        } else {
            strbuf_put(b, (const char *)p, 1);
        }
    }
    strbuf_put(b, "\"", 1);
}

size_t json_nul_escape_offset(const char *s, size_t n) {
    for (const char *p = s; (p = memmem(p, (size_t)(s + n - p), "\\u0000", 6)); p++) {
        // a backslash after an odd number of backslashes is escaped text, not an escape
        size_t k = 0;
        while (p - k > s && p[-(ptrdiff_t)k - 1] == '\\') k++;
        if (k % 2 == 0) return (size_t)(p - s);
    }
    return n;
}

void format_duration(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, t % 3600 / 60);
    else if (t >= 60)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%lds", t);
}

void format_count(double v, char *buf, size_t n) {
    if (v >= 1e6)
        snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 1e4)
        snprintf(buf, n, "%.1fk", v / 1e3);
    else
        snprintf(buf, n, "%.0f", v);
}

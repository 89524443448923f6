// A growable NUL-terminated string, for building JSON text (config.json, safetensors headers).
#ifndef GEMC_STRBUF_H
#define GEMC_STRBUF_H

#include <stddef.h>

typedef struct {
    char *p; // NUL-terminated once anything was added; NULL before
    size_t len, cap;
} StrBuf;

void strbuf_put(StrBuf *b, const char *s, size_t n);
void strbuf_puts(StrBuf *b, const char *s);
// printf into the buffer (any length).
void strbuf_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// s as a JSON string literal: quotes, backslashes and control characters escaped.
void strbuf_json_string(StrBuf *b, const char *s);

// Offset of the first \u0000 escape in JSON text s[0..n), or n. cJSON decodes strings into C
// strings, which such an escape would cut short without a word, so readers refuse it.
size_t json_nul_escape_offset(const char *s, size_t n);

// Console figures: "1m05s", "2h03m", "12s".
void format_duration(double seconds, char *buf, size_t n);
// "12.3k", "950", "1.20M".
void format_count(double v, char *buf, size_t n);

#endif

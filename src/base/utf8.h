// UTF-8: validation, decoding, and the lossy conversion Hugging Face applies when it decodes.
#ifndef GEMC_UTF8_H
#define GEMC_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "base/strbuf.h"

// Decodes one well-formed UTF-8 sequence (shortest form, no surrogates, <= U+10FFFF) at s[0..n).
// Returns its length (1..4) and stores the code point, or 0 when s does not start with one.
int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
// Writes the UTF-8 encoding of cp (<= U+10FFFF) to out; returns its length (1..4).
int utf8_encode(uint32_t cp, char out[4]);
// Offset of the first byte that is not part of a well-formed sequence, or n when all of s is.
size_t utf8_invalid_offset(const char *s, size_t n);
// Appends s with every ill-formed part replaced by U+FFFD, one per maximal ill-formed subpart
// (Unicode 3.9 / WHATWG; what Rust's String::from_utf8_lossy and Python's errors="replace" do).
void utf8_append_lossy(StrBuf *out, const char *s, size_t n);

#endif

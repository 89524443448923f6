// Hugging Face tokenizer.json: byte-level BPE, as used by Llama 3, Qwen2/Qwen3, GPT-2 and SmolLM.
//
// encode = added/special tokens split out of the raw text -> normalizer (NFC, ...) -> the
// pre-tokenizers (Split regex with PCRE2, ByteLevel, Digits) -> BPE with merge ranks in a hash
// table -> post-processor (BOS/EOS templates), only when add_special is asked for.
// decode = ids -> token strings -> ByteLevel byte mapping -> bytes.
// The result agrees with the `tokenizers` library id for id; tests/test_tokenizer_real.c checks
// that on the Llama 3 and Qwen3 files.
#ifndef GEMC_TOKENIZER_H
#define GEMC_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "base/intvec.h"
#include "base/strbuf.h"

typedef struct Tokenizer Tokenizer;

// Loads PATH: a tokenizer.json file, or a model folder holding one. Returns NULL with the error
// recorded ("PATH: what is wrong") when the file is missing, malformed or uses a component gemc
// does not implement.
Tokenizer *tokenizer_load(const char *path);
void tokenizer_free(Tokenizer *t);

// Appends the ids of text[0..len) to out. add_special applies the post-processor (the BOS of
// Llama 3.1 and later files), like add_special_tokens=True in transformers; special tokens that
// occur in the text are always recognised. Returns 0, or -1 with the error recorded when the
// text is not valid UTF-8 (the error names the byte offset). Not thread-safe: one Tokenizer per
// thread (it caches the BPE of recent words).
int tokenizer_encode(Tokenizer *t, const char *text, size_t len, int add_special, IntVec *out);

// Appends the bytes that ids[0..n) stand for to out (raw bytes: a cut can end inside a UTF-8
// character; utf8_append_lossy makes text of them). skip_special leaves special tokens out.
// Returns 0, or -1 with the error recorded for an id outside the vocabulary.
int tokenizer_decode(const Tokenizer *t, const int *ids, int n, int skip_special, StrBuf *out);

// Number of ids (the largest id + 1, added tokens included).
int tokenizer_vocab_size(const Tokenizer *t);
// Id of a token given as its vocabulary string or added-token content, or -1.
int tokenizer_token_id(const Tokenizer *t, const char *token);
// Whether id is an added token marked special.
int tokenizer_is_special(const Tokenizer *t, int id);
// The file it was read from, and a hash of its bytes (FNV-1a 64) for shard/ckpt provenance.
const char *tokenizer_path(const Tokenizer *t);
uint64_t tokenizer_hash(const Tokenizer *t);

// Puts a tokenizer into a model folder: src is a tokenizer.json or a folder holding one; its
// tokenizer.json, and the tokenizer_config.json and special_tokens_map.json beside it when they
// exist, are copied into dst_dir (atomically). The tokenizer is loaded first, and refused when
// its ids do not fit the model's embedding (model_vocab_size). Returns 0, or -1 with the error.
int tokenizer_copy_files(const char *src, const char *dst_dir, int model_vocab_size);

// Writes the embedded tiny model's tokenizer into dir: tokenizer.json (byte-level BPE with no
// merges, token b = byte b, special tokens 256 <|begin_of_text|>, 257 <|end_of_text|>,
// 258 <|im_start|>, 259 <|im_end|>, BOS added by the post-processor) and tokenizer_config.json
// (the plain chat template). Returns 0, or -1 with the error recorded.
int tokenizer_write_bytelevel(const char *dir, int model_max_length);

// GPT-2's byte-level alphabet: the printable character that stands for byte b in vocabularies
// (bytes that are printable Latin-1 stand for themselves, the rest map to U+0100 and up).
uint32_t bytelevel_char(unsigned char b);

#endif

// The parts of a loaded tokenizer.json, shared by the loader (tokenizer_load.c), the BPE model
// (tokenizer_bpe.c) and the encode/decode pipeline (tokenizer.c). Not a public header.
#ifndef GEMC_TOKENIZER_INTERNAL_H
#define GEMC_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "text/tokenizer.h"

// String -> id, open addressing. Keys live in the tokenizer's arena (offset, length).
typedef struct {
    uint32_t *slots; // index + 1 into keys/ids, 0 = empty
    uint32_t mask;
    uint32_t *key_off, *key_len;
    int *ids;
    int n, cap;
} StrMap;

// (left id, right id) -> (rank, merged id), open addressing on the packed 64-bit pair.
typedef struct {
    uint64_t *keys; // UINT64_MAX = empty
    uint32_t *ranks;
    int *merged;
    uint64_t mask;
    int n;
} MergeMap;

// Recently encoded words and their ids, so frequent words skip the merges. Direct-mapped:
// a new word replaces whatever shared its slot, so memory stays bounded.
typedef struct {
    uint64_t *hash; // 0 = empty
    char **key;
    uint32_t *key_len;
    int **ids;
    int *n_ids;
    int slots;
} WordCache;

typedef enum {
    NORM_NFC,
    NORM_NFD,
    NORM_NFKC,
    NORM_NFKD,
} NormKind;

typedef enum {
    PRETOK_SPLIT,
    PRETOK_BYTELEVEL,
    PRETOK_DIGITS,
} PretokKind;

// How Split treats the pieces its pattern matches (tokenizers' SplitDelimiterBehavior).
typedef enum {
    SPLIT_REMOVED,
    SPLIT_ISOLATED,
    SPLIT_MERGED_WITH_PREVIOUS,
    SPLIT_MERGED_WITH_NEXT,
    SPLIT_CONTIGUOUS,
} SplitBehavior;

typedef struct {
    PretokKind kind;
    // Split
    pcre2_code *re; // NULL for a literal String pattern
    char *literal;  // the String pattern
    size_t literal_len;
    SplitBehavior behavior;
    int invert;
    // ByteLevel
    int add_prefix_space, use_regex;
    // Digits
    int individual_digits;
} PreTokenizer;

typedef struct {
    int id;
    char *content;
    size_t len;
    int special, normalized, lstrip, rstrip, single_word;
} AddedToken;

#define MAX_NORMALIZERS   8
#define MAX_PRETOKENIZERS 8

struct Tokenizer {
    char *path;
    uint64_t file_hash;

    // the model's vocabulary: token string -> id, and back
    char *arena; // every token string, back to back
    size_t arena_len, arena_cap;
    StrMap vocab;
    uint32_t *tok_off, *tok_len; // id -> token string in the arena (len 0 and off 0: no token)
    int vocab_size;              // largest id + 1, added tokens included
    MergeMap merges;
    int ignore_merges;
    int unk_id; // -1: unknown characters are dropped, as tokenizers does without unk_token
    int fuse_unk;
    int char_id[512]; // vocabulary id of each single code point below 512, or -1 (hot path)

    AddedToken *added;
    int n_added;
    unsigned char *is_special; // [vocab_size]

    NormKind norm[MAX_NORMALIZERS];
    int n_norm;
    PreTokenizer pretok[MAX_PRETOKENIZERS];
    int n_pretok;
    pcre2_code *gpt2_re; // ByteLevel's own split, when use_regex is set

    IntVec post_prefix, post_suffix; // the post-processor's ids around the sequence
    int has_bytelevel_decoder;

    WordCache cache;
    pcre2_match_data *md;
};

// tokenizer_bpe.c
void strmap_init(StrMap *m, int cap);
void strmap_free(StrMap *m);
// Returns the id stored for key, or -1.
int strmap_get(const StrMap *m, const char *arena, const char *key, size_t len);
// Adds key (already in the arena at off) -> id; an existing key keeps its first id.
void strmap_put(StrMap *m, const char *arena, uint32_t off, uint32_t len, int id);
void mergemap_init(MergeMap *m, int n_expected);
void mergemap_free(MergeMap *m);
// A later merge of the same pair replaces the earlier one, as tokenizers' HashMap::collect does.
void mergemap_put(MergeMap *m, int left, int right, uint32_t rank, int merged);
void wordcache_init(WordCache *c, int slots);
void wordcache_free(WordCache *c);
// Appends the BPE ids of word[0..len) (already in the model's alphabet: byte-level characters
// when the pre-tokenizer maps bytes) to out.
void bpe_encode_word(Tokenizer *t, const char *word, size_t len, IntVec *out);

#endif

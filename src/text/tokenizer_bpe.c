// The BPE model: vocabulary and merge-rank hash tables, and the merge loop of one word.
//
// The merge loop is the one of Hugging Face tokenizers: a min-heap of candidate pairs ordered
// by (rank, position), popped one at a time, stale entries skipped. Merging the lowest-ranked
// pair first, leftmost among equals, is what makes the ids agree with theirs in every case
// (overlapping pairs such as "aaa" included); the heap keeps long words O(n log n).
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_internal.h"
#include "base/utf8.h"

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t c = 16;
    while (c < n) c *= 2;
    return c;
}

// ---- string -> id ----

void strmap_init(StrMap *m, int cap) {
    uint32_t slots = pow2_at_least((uint64_t)cap * 2);
    m->slots = callocCheck(slots, sizeof(uint32_t));
    m->mask = slots - 1;
    m->cap = cap > 0 ? cap : 1;
    m->n = 0;
    m->key_off = mallocCheck(sizeof(uint32_t) * (size_t)m->cap);
    m->key_len = mallocCheck(sizeof(uint32_t) * (size_t)m->cap);
    m->ids = mallocCheck(sizeof(int) * (size_t)m->cap);
}

void strmap_free(StrMap *m) {
    free(m->slots);
    free(m->key_off);
    free(m->key_len);
    free(m->ids);
    *m = (StrMap){0};
}

int strmap_get(const StrMap *m, const char *arena, const char *key, size_t len) {
    for (uint32_t i = (uint32_t)fnv1a64(key, len) & m->mask;; i = (i + 1) & m->mask) {
        uint32_t s = m->slots[i];
        if (!s) return -1;
        s--;
        if (m->key_len[s] == len && !memcmp(arena + m->key_off[s], key, len)) return m->ids[s];
    }
}

void strmap_put(StrMap *m, const char *arena, uint32_t off, uint32_t len, int id) {
    if (m->n == m->cap) gemc_fatal("internal: string map is full");
    uint32_t i = (uint32_t)fnv1a64(arena + off, len) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        uint32_t s = m->slots[i];
        if (!s) break;
        s--;
        if (m->key_len[s] == len && !memcmp(arena + m->key_off[s], arena + off, len)) return;
    }
    m->key_off[m->n] = off;
    m->key_len[m->n] = len;
    m->ids[m->n] = id;
    m->slots[i] = (uint32_t)++m->n;
}

// ---- (left, right) -> (rank, merged) ----

static uint64_t pair_key(int left, int right) {
    return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
}

static uint64_t mix64(uint64_t x) { // splitmix64's finaliser: spreads packed id pairs
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void mergemap_init(MergeMap *m, int n_expected) {
    uint64_t slots = pow2_at_least((uint64_t)n_expected * 2);
    m->keys = mallocCheck(sizeof(uint64_t) * slots);
    memset(m->keys, 0xff, sizeof(uint64_t) * slots);
    m->ranks = mallocCheck(sizeof(uint32_t) * slots);
    m->merged = mallocCheck(sizeof(int) * slots);
    m->mask = slots - 1;
    m->n = 0;
}

void mergemap_free(MergeMap *m) {
    free(m->keys);
    free(m->ranks);
    free(m->merged);
    *m = (MergeMap){0};
}

void mergemap_put(MergeMap *m, int left, int right, uint32_t rank, int merged) {
    uint64_t k = pair_key(left, right);
    uint64_t i = mix64(k) & m->mask;
    while (m->keys[i] != UINT64_MAX && m->keys[i] != k) i = (i + 1) & m->mask;
    if (m->keys[i] == UINT64_MAX) {
        if ((uint64_t)(m->n + 1) * 2 > m->mask + 1) gemc_fatal("internal: merge map is full");
        m->n++;
    }
    m->keys[i] = k;
    m->ranks[i] = rank;
    m->merged[i] = merged;
}

// Rank and merged id of (left, right); 0 when the pair is not a merge.
static int mergemap_get(const MergeMap *m, int left, int right, uint32_t *rank, int *merged) {
    uint64_t k = pair_key(left, right);
    for (uint64_t i = mix64(k) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == k) {
            *rank = m->ranks[i];
            *merged = m->merged[i];
            return 1;
        }
        if (m->keys[i] == UINT64_MAX) return 0;
    }
}

// ---- word cache ----

// Words longer than this are encoded each time: long runs are rare and would crowd the cache.
#define CACHE_MAX_WORD 64

void wordcache_init(WordCache *c, int slots) {
    c->slots = slots;
    c->hash = callocCheck((size_t)slots, sizeof(uint64_t));
    c->key = callocCheck((size_t)slots, sizeof(char *));
    c->key_len = callocCheck((size_t)slots, sizeof(uint32_t));
    c->ids = callocCheck((size_t)slots, sizeof(int *));
    c->n_ids = callocCheck((size_t)slots, sizeof(int));
}

void wordcache_free(WordCache *c) {
    for (int i = 0; i < c->slots; i++) {
        free(c->key[i]);
        free(c->ids[i]);
    }
    free(c->hash);
    free(c->key);
    free(c->key_len);
    free(c->ids);
    free(c->n_ids);
    *c = (WordCache){0};
}

static void wordcache_store(WordCache *c, uint64_t h, const char *word, size_t len, const int *ids,
                            int n) {
    int s = (int)(h % (uint64_t)c->slots);
    free(c->key[s]);
    free(c->ids[s]);
    c->key[s] = mallocCheck(len);
    memcpy(c->key[s], word, len);
    c->key_len[s] = (uint32_t)len;
    c->ids[s] = mallocCheck(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (n) memcpy(c->ids[s], ids, sizeof(int) * (size_t)n);
    c->n_ids[s] = n;
    c->hash[s] = h | 1; // never 0, which marks an empty slot
}

// ---- the merge loop ----

typedef struct {
    int id;
    int prev, next; // neighbours in the word, -1 at the ends
    int alive;
} Symbol;

typedef struct {
    uint32_t rank;
    int pos;    // the left symbol of the pair
    int merged; // the id the pair merges into, to recognise stale entries
} Candidate;

static int candidate_before(Candidate a, Candidate b) {
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

typedef struct {
    Candidate *v;
    int n, cap;
} Heap;

static void heap_push(Heap *h, Candidate c) {
    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 64;
        h->v = realloc(h->v, sizeof(Candidate) * (size_t)h->cap);
        if (!h->v) gemc_fatal("out of memory");
    }
    int i = h->n++;
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!candidate_before(c, h->v[parent])) break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = c;
}

static Candidate heap_pop(Heap *h) {
    Candidate top = h->v[0], last = h->v[--h->n];
    int i = 0;
    for (;;) {
        int child = 2 * i + 1;
        if (child >= h->n) break;
        if (child + 1 < h->n && candidate_before(h->v[child + 1], h->v[child])) child++;
        if (!candidate_before(h->v[child], last)) break;
        h->v[i] = h->v[child];
        i = child;
    }
    h->v[i] = last;
    return top;
}

static void push_pair(const Tokenizer *t, Heap *h, const Symbol *sym, int pos) {
    int next = sym[pos].next;
    if (next < 0) return;
    uint32_t rank;
    int merged;
    if (mergemap_get(&t->merges, sym[pos].id, sym[next].id, &rank, &merged))
        heap_push(h, (Candidate){rank, pos, merged});
}

// The id of one character of the model's alphabet, or -1.
static int char_to_id(const Tokenizer *t, const char *c, int len) {
    uint32_t cp;
    if (utf8_decode((const unsigned char *)c, (size_t)len, &cp) && cp < 512) return t->char_id[cp];
    return strmap_get(&t->vocab, t->arena, c, (size_t)len);
}

static void merge_word(Tokenizer *t, const char *word, size_t len, IntVec *out) {
    // one symbol per character; unknown characters become unk_id (fused when fuse_unk) or,
    // without an unk token, are dropped, as tokenizers does
    Symbol *sym = mallocCheck(sizeof(Symbol) * (len + 1));
    int n = 0, pending_unk = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int cl = utf8_decode((const unsigned char *)word + i, len - i, &cp);
        if (!cl) cl = 1; // unreachable: the input was validated
        int id = char_to_id(t, word + i, cl);
        i += (size_t)cl;
        if (id < 0) {
            if (t->unk_id < 0) continue;
            if (pending_unk && t->fuse_unk) continue;
            id = t->unk_id;
            pending_unk = 1;
        } else {
            pending_unk = 0;
        }
        sym[n] = (Symbol){id, n - 1, -1, 1};
        if (n) sym[n - 1].next = n;
        n++;
    }

    Heap heap = {0};
    for (int i = 0; i + 1 < n; i++) push_pair(t, &heap, sym, i);
    while (heap.n) {
        Candidate c = heap_pop(&heap);
        Symbol *left = &sym[c.pos];
        if (!left->alive || left->next < 0) continue;
        uint32_t rank;
        int merged;
        if (!mergemap_get(&t->merges, left->id, sym[left->next].id, &rank, &merged) ||
            merged != c.merged)
            continue; // stale: one side merged with something else since
        Symbol *right = &sym[left->next];
        left->id = merged;
        right->alive = 0;
        left->next = right->next;
        if (right->next >= 0) sym[right->next].prev = c.pos;
        if (left->prev >= 0) push_pair(t, &heap, sym, left->prev);
        push_pair(t, &heap, sym, c.pos);
    }
    free(heap.v);
    for (int i = 0; i < n; i++)
        if (sym[i].alive) intvec_push(out, sym[i].id);
    free(sym);
}

void bpe_encode_word(Tokenizer *t, const char *word, size_t len, IntVec *out) {
    if (!len) return;
    int cacheable = len <= CACHE_MAX_WORD;
    uint64_t h = 0;
    if (cacheable) {
        h = fnv1a64(word, len);
        int s = (int)(h % (uint64_t)t->cache.slots);
        if (t->cache.hash[s] == (h | 1) && t->cache.key_len[s] == len &&
            !memcmp(t->cache.key[s], word, len)) {
            for (int i = 0; i < t->cache.n_ids[s]; i++) intvec_push(out, t->cache.ids[s][i]);
            return;
        }
    }
    int start = out->n;
    int whole = t->ignore_merges ? strmap_get(&t->vocab, t->arena, word, len) : -1;
    if (whole >= 0)
        intvec_push(out, whole);
    else
        merge_word(t, word, len, out);
    // a word can give no ids (a vocabulary without its bytes and no unk): out->v may be NULL
    if (cacheable)
        wordcache_store(&t->cache, h, word, len, out->n > start ? out->v + start : NULL,
                        out->n - start);
}

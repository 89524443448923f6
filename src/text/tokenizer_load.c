// Reading tokenizer.json: every component gemc implements is parsed here, and anything else is
// refused with a line that names the component, so a tokenizer never runs half-understood.
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "base/json_file.h"
#include "text/tokenizer_internal.h"
#include "base/utf8.h"

#define SUPPORTED_HINT                                                                             \
    "HINT: gemc reads byte-level BPE tokenizer.json files such as those of Llama 3, Qwen2/Qwen3, " \
    "GPT-2 and SmolLM"

// GPT-2's split, which ByteLevel applies itself when use_regex is set.
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct {
    Tokenizer *t;
    const char *path;
} Loader;

static uint32_t arena_add(Tokenizer *t, const char *s, size_t n) {
    if (t->arena_len + n + 1 > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : 1 << 20;
        while (t->arena_len + n + 1 > cap) cap *= 2;
        t->arena = realloc(t->arena, cap);
        if (!t->arena) gemc_fatal("out of memory");
        t->arena_cap = cap;
    }
    uint32_t off = (uint32_t)t->arena_len;
    memcpy(t->arena + off, s, n);
    t->arena[off + n] = 0;
    t->arena_len += n + 1;
    return off;
}

static const char *type_of(const cJSON *o) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(ty) ? ty->valuestring : NULL;
}

static int flag(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

// The Oniguruma patterns of tokenizer.json mean by \s exactly: \t \n \v \f \r, U+0085 and the
// Z categories. PCRE2's \s under UCP also takes U+180E, so it is spelled out for PCRE2.
#define ONIG_SPACE "\\t\\n\\x0B\\f\\r\\x{85}\\p{Z}"
static char *translate_pattern(const char *p) {
    StrBuf b = {0};
    int in_class = 0;
    for (size_t i = 0; p[i]; i++) {
        if (p[i] == '\\' && p[i + 1]) {
            char c = p[i + 1];
            if (c == 's')
                strbuf_puts(&b, in_class ? ONIG_SPACE : "[" ONIG_SPACE "]");
            else if (c == 'S' && !in_class)
                strbuf_puts(&b, "[^" ONIG_SPACE "]");
            else
                strbuf_put(&b, p + i, 2);
            i++;
            continue;
        }
        if (p[i] == '[' && !in_class) {
            in_class = 1;
            strbuf_put(&b, p + i, 1);
            // a ']' right after '[' or '[^' is a literal, not the end of the class
            if (p[i + 1] == '^') strbuf_put(&b, p + ++i, 1);
            if (p[i + 1] == ']') strbuf_put(&b, p + ++i, 1);
            continue;
        }
        if (p[i] == ']' && in_class) in_class = 0;
        strbuf_put(&b, p + i, 1);
    }
    if (!b.p) strbuf_puts(&b, "");
    return b.p;
}

static pcre2_code *compile_regex(const Loader *L, const char *pattern, const char *where) {
    char *translated = translate_pattern(pattern);
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)translated, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    free(translated);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        gemc_set_error("%s: %s: the regex does not compile with PCRE2 (%s, near offset %zu of "
                       "\"%s\")",
                       L->path, where, (const char *)msg, (size_t)off, pattern);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); // falls back to the interpreter where JIT is off
    return re;
}

static int parse_normalizer(Loader *L, const cJSON *n) {
    if (!n || cJSON_IsNull(n)) return 0;
    const char *ty = type_of(n);
    if (!ty) {
        gemc_set_error("%s: normalizer has no \"type\"", L->path);
        return -1;
    }
    if (!strcmp(ty, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        const cJSON *e;
        cJSON_ArrayForEach(e, list) if (parse_normalizer(L, e)) return -1;
        return 0;
    }
    static const struct {
        const char *name;
        NormKind kind;
    } forms[] = {{"NFC", NORM_NFC}, {"NFD", NORM_NFD}, {"NFKC", NORM_NFKC}, {"NFKD", NORM_NFKD}};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        if (strcmp(ty, forms[i].name)) continue;
        if (L->t->n_norm == MAX_NORMALIZERS) {
            gemc_set_error("%s: more than %d normalizers", L->path, MAX_NORMALIZERS);
            return -1;
        }
        L->t->norm[L->t->n_norm++] = forms[i].kind;
        return 0;
    }
    gemc_set_error("%s: normalizer type '%s' is not supported; gemc implements NFC, NFD, NFKC, "
                   "NFKD and Sequence (%s)",
                   L->path, ty, SUPPORTED_HINT);
    return -1;
}

static PreTokenizer *new_pretok(Loader *L, PretokKind kind) {
    if (L->t->n_pretok == MAX_PRETOKENIZERS) {
        gemc_set_error("%s: more than %d pre-tokenizers", L->path, MAX_PRETOKENIZERS);
        return NULL;
    }
    PreTokenizer *p = &L->t->pretok[L->t->n_pretok++];
    *p = (PreTokenizer){.kind = kind};
    return p;
}

static int parse_split(Loader *L, const cJSON *n, PreTokenizer *p) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    const cJSON *lit = cJSON_GetObjectItemCaseSensitive(pat, "String");
    if (cJSON_IsString(re)) {
        if (!(p->re = compile_regex(L, re->valuestring, "pre_tokenizer Split pattern"))) return -1;
    } else if (cJSON_IsString(lit)) {
        p->literal_len = strlen(lit->valuestring);
        p->literal = mallocCheck(p->literal_len + 1);
        memcpy(p->literal, lit->valuestring, p->literal_len + 1);
    } else {
        gemc_set_error("%s: pre_tokenizer Split needs \"pattern\": {\"Regex\": ...} or "
                       "{\"String\": ...}",
                       L->path);
        return -1;
    }
    static const struct {
        const char *name;
        SplitBehavior b;
    } behaviors[] = {{"Removed", SPLIT_REMOVED},
                     {"Isolated", SPLIT_ISOLATED},
                     {"MergedWithPrevious", SPLIT_MERGED_WITH_PREVIOUS},
                     {"MergedWithNext", SPLIT_MERGED_WITH_NEXT},
                     {"Contiguous", SPLIT_CONTIGUOUS}};
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(n, "behavior");
    const char *bname = cJSON_IsString(b) ? b->valuestring : "";
    size_t i = 0;
    for (; i < sizeof behaviors / sizeof behaviors[0]; i++)
        if (!strcmp(bname, behaviors[i].name)) break;
    if (i == sizeof behaviors / sizeof behaviors[0]) {
        gemc_set_error("%s: pre_tokenizer Split has behavior '%s'; expected Removed, Isolated, "
                       "MergedWithPrevious, MergedWithNext or Contiguous",
                       L->path, bname);
        return -1;
    }
    p->behavior = behaviors[i].b;
    p->invert = flag(n, "invert", 0);
    return 0;
}

static int parse_pretokenizer(Loader *L, const cJSON *n) {
    if (!n || cJSON_IsNull(n)) return 0;
    const char *ty = type_of(n);
    if (!ty) {
        gemc_set_error("%s: pre_tokenizer has no \"type\"", L->path);
        return -1;
    }
    if (!strcmp(ty, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "pretokenizers");
        const cJSON *e;
        cJSON_ArrayForEach(e, list) if (parse_pretokenizer(L, e)) return -1;
        return 0;
    }
    PreTokenizer *p;
    if (!strcmp(ty, "Split")) {
        if (!(p = new_pretok(L, PRETOK_SPLIT))) return -1;
        return parse_split(L, n, p);
    }
    if (!strcmp(ty, "ByteLevel")) {
        if (!(p = new_pretok(L, PRETOK_BYTELEVEL))) return -1;
        p->add_prefix_space = flag(n, "add_prefix_space", 1);
        p->use_regex = flag(n, "use_regex", 1);
        if (p->use_regex && !L->t->gpt2_re &&
            !(L->t->gpt2_re = compile_regex(L, GPT2_PATTERN, "ByteLevel")))
            return -1;
        return 0;
    }
    if (!strcmp(ty, "Digits")) {
        if (!(p = new_pretok(L, PRETOK_DIGITS))) return -1;
        p->individual_digits = flag(n, "individual_digits", 0);
        return 0;
    }
    gemc_set_error("%s: pre_tokenizer type '%s' is not supported; gemc implements Split, "
                   "ByteLevel, Digits and Sequence (%s)",
                   L->path, ty, SUPPORTED_HINT);
    return -1;
}

// Adds the ids of one special token of a post-processor to out.
static int special_ids(Loader *L, const cJSON *specials, const char *name, IntVec *out) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(specials, name);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(s, "ids");
    if (!cJSON_IsArray(ids)) {
        gemc_set_error("%s: post_processor uses special token '%s' but its special_tokens entry "
                       "has no \"ids\" list",
                       L->path, name);
        return -1;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, ids) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= L->t->vocab_size) {
            gemc_set_error("%s: post_processor special token '%s' has an id outside the "
                           "vocabulary",
                           L->path, name);
            return -1;
        }
        intvec_push(out, e->valueint);
    }
    return 0;
}

// One processor wraps what the earlier ones made: its prefix goes in front of theirs.
static void wrap(Tokenizer *t, const IntVec *pre, const IntVec *suf) {
    IntVec p = {0};
    for (int i = 0; i < pre->n; i++) intvec_push(&p, pre->v[i]);
    for (int i = 0; i < t->post_prefix.n; i++) intvec_push(&p, t->post_prefix.v[i]);
    intvec_free(&t->post_prefix);
    t->post_prefix = p;
    for (int i = 0; i < suf->n; i++) intvec_push(&t->post_suffix, suf->v[i]);
}

static int parse_postprocessor(Loader *L, const cJSON *n) {
    if (!n || cJSON_IsNull(n)) return 0;
    const char *ty = type_of(n);
    if (!ty) {
        gemc_set_error("%s: post_processor has no \"type\"", L->path);
        return -1;
    }
    if (!strcmp(ty, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "processors");
        const cJSON *e;
        cJSON_ArrayForEach(e, list) if (parse_postprocessor(L, e)) return -1;
        return 0;
    }
    if (!strcmp(ty, "ByteLevel")) return 0; // it adjusts offsets only, never ids
    IntVec pre = {0}, suf = {0};
    int rc = -1;
    if (!strcmp(ty, "TemplateProcessing")) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(n, "single");
        const cJSON *specials = cJSON_GetObjectItemCaseSensitive(n, "special_tokens");
        int seen_sequence = 0;
        const cJSON *e;
        rc = 0;
        cJSON_ArrayForEach(e, single) {
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
            const cJSON *seq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(sp, "id");
            if (cJSON_IsString(id)) {
                if (special_ids(L, specials, id->valuestring, seen_sequence ? &suf : &pre)) {
                    rc = -1;
                    break;
                }
            } else if (seq && !seen_sequence) {
                seen_sequence = 1;
            } else {
                gemc_set_error("%s: post_processor TemplateProcessing \"single\" must hold "
                               "SpecialToken entries and one Sequence",
                               L->path);
                rc = -1;
                break;
            }
        }
        if (!rc && !seen_sequence) {
            gemc_set_error("%s: post_processor TemplateProcessing \"single\" has no Sequence",
                           L->path);
            rc = -1;
        }
    } else if (!strcmp(ty, "BertProcessing") || !strcmp(ty, "RobertaProcessing")) {
        // "cls": ["[CLS]", 101], "sep": ["[SEP]", 102]: CLS A SEP
        const cJSON *cls = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(n, "cls"), 1);
        const cJSON *sep = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(n, "sep"), 1);
        if (cJSON_IsNumber(cls) && cJSON_IsNumber(sep) && cls->valueint >= 0 &&
            sep->valueint >= 0 && cls->valueint < L->t->vocab_size &&
            sep->valueint < L->t->vocab_size) {
            intvec_push(&pre, cls->valueint);
            intvec_push(&suf, sep->valueint);
            rc = 0;
        } else {
            gemc_set_error("%s: post_processor %s needs \"cls\" and \"sep\" as [token, id] with "
                           "ids in the vocabulary",
                           L->path, ty);
        }
    } else {
        gemc_set_error("%s: post_processor type '%s' is not supported; gemc implements "
                       "TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel and "
                       "Sequence (%s)",
                       L->path, ty, SUPPORTED_HINT);
    }
    if (!rc) wrap(L->t, &pre, &suf);
    intvec_free(&pre);
    intvec_free(&suf);
    return rc;
}

static int parse_decoder(Loader *L, const cJSON *n) {
    if (!n || cJSON_IsNull(n)) return 0;
    const char *ty = type_of(n);
    if (ty && !strcmp(ty, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "decoders");
        const cJSON *e;
        cJSON_ArrayForEach(e, list) if (parse_decoder(L, e)) return -1;
        return 0;
    }
    if (ty && !strcmp(ty, "ByteLevel")) {
        L->t->has_bytelevel_decoder = 1;
        return 0;
    }
    gemc_set_error("%s: decoder type '%s' is not supported; gemc implements ByteLevel (%s)",
                   L->path, ty ? ty : "(none)", SUPPORTED_HINT);
    return -1;
}

// Splits one merge, "a b" or ["a", "b"], into its two token strings.
static int merge_parts(Loader *L, const cJSON *m, int idx, const char **a, size_t *alen,
                       const char **b, size_t *blen) {
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (sp && sp != s && sp[1] && !strchr(sp + 1, ' ')) {
            *a = s;
            *alen = (size_t)(sp - s);
            *b = sp + 1;
            *blen = strlen(sp + 1);
            return 0;
        }
    } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
               cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
               cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
        *a = cJSON_GetArrayItem(m, 0)->valuestring;
        *b = cJSON_GetArrayItem(m, 1)->valuestring;
        *alen = strlen(*a);
        *blen = strlen(*b);
        return 0;
    }
    gemc_set_error("%s: model.merges[%d] is not a merge: expected \"left right\" or "
                   "[\"left\", \"right\"]",
                   L->path, idx);
    return -1;
}

static int parse_model(Loader *L, const cJSON *model) {
    Tokenizer *t = L->t;
    const char *ty = type_of(model);
    if (!ty || strcmp(ty, "BPE")) {
        gemc_set_error("%s: model type '%s' is not supported; gemc implements BPE (%s)", L->path,
                       ty ? ty : "(none)", SUPPORTED_HINT);
        return -1;
    }
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0) {
        gemc_set_error("%s: model.dropout is %g; gemc encodes deterministically (HINT: set "
                       "\"dropout\": null)",
                       L->path, dropout->valuedouble);
        return -1;
    }
    if (flag(model, "byte_fallback", 0)) {
        gemc_set_error("%s: model.byte_fallback is set (SentencePiece-style BPE) and not "
                       "supported (%s)",
                       L->path, SUPPORTED_HINT);
        return -1;
    }
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (cJSON_IsString(a) && a->valuestring[0]) {
            gemc_set_error("%s: model.%s \"%s\" is not supported (%s)", L->path, affixes[i],
                           a->valuestring, SUPPORTED_HINT);
            return -1;
        }
    }
    t->ignore_merges = flag(model, "ignore_merges", 0);
    t->fuse_unk = flag(model, "fuse_unk", 0);

    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) {
        gemc_set_error("%s: model.vocab is missing or not an object", L->path);
        return -1;
    }
    int n_vocab = cJSON_GetArraySize(vocab);
    strmap_init(&t->vocab, n_vocab + 1);
    int max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        double d = cJSON_IsNumber(e) ? e->valuedouble : -1;
        // the range first: (int)d of a value an int cannot hold is undefined
        if (d < 0 || d > (1 << 30) || d != (double)(int)d) {
            gemc_set_error("%s: model.vocab[\"%s\"] is not a non-negative integer id", L->path,
                           e->string);
            return -1;
        }
        uint32_t off = arena_add(t, e->string, strlen(e->string));
        strmap_put(&t->vocab, t->arena, off, (uint32_t)strlen(e->string), (int)d);
        if ((int)d > max_id) max_id = (int)d;
    }
    t->vocab_size = max_id + 1;

    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    t->unk_id = -1;
    if (cJSON_IsString(unk)) {
        t->unk_id = strmap_get(&t->vocab, t->arena, unk->valuestring, strlen(unk->valuestring));
        if (t->unk_id < 0) {
            gemc_set_error("%s: model.unk_token \"%s\" is not in the vocabulary", L->path,
                           unk->valuestring);
            return -1;
        }
    }

    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (merges && !cJSON_IsArray(merges)) {
        gemc_set_error("%s: model.merges is not a list", L->path);
        return -1;
    }
    int n_merges = cJSON_GetArraySize(merges);
    mergemap_init(&t->merges, n_merges);
    StrBuf joined = {0};
    int rank = 0;
    cJSON_ArrayForEach(e, merges) {
        const char *a, *b;
        size_t alen, blen;
        if (merge_parts(L, e, rank, &a, &alen, &b, &blen)) {
            free(joined.p);
            return -1;
        }
        int ia = strmap_get(&t->vocab, t->arena, a, alen);
        int ib = strmap_get(&t->vocab, t->arena, b, blen);
        joined.len = 0;
        strbuf_put(&joined, a, alen);
        strbuf_put(&joined, b, blen);
        int im = strmap_get(&t->vocab, t->arena, joined.p, joined.len);
        if (ia < 0 || ib < 0 || im < 0) {
            gemc_set_error("%s: model.merges[%d] (\"%.*s\" + \"%.*s\") uses or makes a token "
                           "that is not in the vocabulary",
                           L->path, rank, (int)alen, a, (int)blen, b);
            free(joined.p);
            return -1;
        }
        mergemap_put(&t->merges, ia, ib, (uint32_t)rank, im);
        rank++;
    }
    free(joined.p);
    return 0;
}

static int parse_added_tokens(Loader *L, const cJSON *list) {
    Tokenizer *t = L->t;
    int n = cJSON_GetArraySize(list);
    t->added = callocCheck((size_t)(n > 0 ? n : 1), sizeof(AddedToken));
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > (1 << 30) ||
            !cJSON_IsString(content)) {
            gemc_set_error("%s: added_tokens[%d] needs an \"id\" and a \"content\" string", L->path,
                           t->n_added);
            return -1;
        }
        if (!content->valuestring[0]) continue; // tokenizers ignores empty added tokens
        AddedToken *a = &t->added[t->n_added++];
        a->id = id->valueint;
        a->len = strlen(content->valuestring);
        a->content = mallocCheck(a->len + 1);
        memcpy(a->content, content->valuestring, a->len + 1);
        a->special = flag(e, "special", 0);
        a->normalized = flag(e, "normalized", !a->special);
        a->lstrip = flag(e, "lstrip", 0);
        a->rstrip = flag(e, "rstrip", 0);
        a->single_word = flag(e, "single_word", 0);
        if (a->id >= t->vocab_size) t->vocab_size = a->id + 1;
    }
    return 0;
}

// id -> token string, for decoding: the vocabulary first, added tokens over it.
static void build_reverse(Tokenizer *t) {
    t->tok_off = callocCheck((size_t)t->vocab_size, sizeof(uint32_t));
    t->tok_len = callocCheck((size_t)t->vocab_size, sizeof(uint32_t));
    t->is_special = callocCheck((size_t)t->vocab_size, 1);
    for (int i = 0; i < t->vocab.n; i++) {
        int id = t->vocab.ids[i];
        t->tok_off[id] = t->vocab.key_off[i];
        t->tok_len[id] = t->vocab.key_len[i];
    }
    for (int i = 0; i < t->n_added; i++) {
        AddedToken *a = &t->added[i];
        t->tok_off[a->id] = arena_add(t, a->content, a->len);
        t->tok_len[a->id] = (uint32_t)a->len;
        t->is_special[a->id] = (unsigned char)a->special;
    }
    for (uint32_t cp = 0; cp < 512; cp++) {
        char buf[4];
        int len = utf8_encode(cp, buf);
        t->char_id[cp] = strmap_get(&t->vocab, t->arena, buf, (size_t)len);
    }
}

static int parse_all(Loader *L, const cJSON *root) {
    if (!cJSON_IsObject(root)) {
        gemc_set_error("%s: not a tokenizer.json (the top level is not an object)", L->path);
        return -1;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!model) {
        gemc_set_error("%s: no \"model\" (%s)", L->path, SUPPORTED_HINT);
        return -1;
    }
    if (parse_model(L, model) ||
        parse_added_tokens(L, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")))
        return -1;
    build_reverse(L->t);
    if (parse_normalizer(L, cJSON_GetObjectItemCaseSensitive(root, "normalizer")) ||
        parse_pretokenizer(L, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer")) ||
        parse_postprocessor(L, cJSON_GetObjectItemCaseSensitive(root, "post_processor")) ||
        parse_decoder(L, cJSON_GetObjectItemCaseSensitive(root, "decoder")))
        return -1;
    return 0;
}

Tokenizer *tokenizer_load(const char *path) {
    struct stat st;
    char *file = NULL;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        file = path_join(path, "tokenizer.json");
        if (stat(file, &st) != 0) {
            gemc_set_error("%s: no tokenizer.json in this folder (HINT: copy the model's "
                           "tokenizer.json there, or pass the file itself)",
                           path);
            free(file);
            return NULL;
        }
    } else {
        file = strdup(path);
    }
    size_t len;
    char *text = read_text_file(file, &len);
    if (!text) {
        free(file);
        return NULL;
    }
    Tokenizer *t = callocCheck(1, sizeof(Tokenizer));
    t->path = file;
    t->file_hash = fnv1a64(text, len);
    Loader L = {t, file};
    cJSON *root = json_parse(text, file);
    int rc = root ? parse_all(&L, root) : -1;
    cJSON_Delete(root);
    free(text);
    if (rc) {
        tokenizer_free(t);
        return NULL;
    }
    wordcache_init(&t->cache, 1 << 14);
    t->md = pcre2_match_data_create(4, NULL);
    return t;
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    free(t->path);
    free(t->arena);
    strmap_free(&t->vocab);
    free(t->tok_off);
    free(t->tok_len);
    mergemap_free(&t->merges);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->is_special);
    for (int i = 0; i < t->n_pretok; i++) {
        pcre2_code_free(t->pretok[i].re);
        free(t->pretok[i].literal);
    }
    pcre2_code_free(t->gpt2_re);
    intvec_free(&t->post_prefix);
    intvec_free(&t->post_suffix);
    if (t->cache.slots) wordcache_free(&t->cache);
    pcre2_match_data_free(t->md);
    free(t);
}

// Reading the configuration from YAML with libyaml: a whole file (config_load_yaml), and the
// one-value document of a quoted or bracketed KEY=VALUE override. The events are walked by hand
// so that each message names the line and the key, with a HINT where a mistake is likely.
//
// A file is read into a copy of the configuration, which replaces the caller's only when the
// whole file was good: a failed call leaves the configuration as it was.
//
// An empty YAML file (or one holding only comments, or only "---") is accepted and changes
// nothing: a config that states no key asks for the defaults, and refusing it would only make
// users write a dummy key.
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "base/cli.h"
#include "base/common.h"
#include "config/config_internal.h"

// ---- reading YAML events

// Where values come from, for the messages: a file (with lines), or one command-line
// assignment / built-in default (the whole text is the place).
typedef struct {
    yaml_parser_t parser;
    const char *file;  // the YAML path as given, or NULL
    const char *place; // without a file: "command line: k=v"
    const char *text;  // the bytes being parsed (for the tab hint)
    size_t text_len;
    int *key_line;     // per key, the line of this file that set it (0 = none yet)
    int *section_line; // per section, likewise
    GemConfig *c;      // what the values go into
} Loader;

static int load_error(const Loader *L, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int load_error(const Loader *L, int line, const char *fmt, ...) {
    char msg[WHY_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (L->file)
        gemc_set_error("%s:%d: %s", L->file, line, msg);
    else
        gemc_set_error("%s: %s", L->place, msg);
    return -1;
}

// 1 when line `line` (1-based) of the parsed text is indented with a tab.
static int line_has_tab_indent(const Loader *L, int line) {
    const char *p = L->text, *end = L->text + L->text_len;
    for (int l = 1; l < line && p < end; p++)
        if (*p == '\n') l++;
    for (; p < end && (*p == ' ' || *p == '\t'); p++)
        if (*p == '\t') return 1;
    return 0;
}

static int syntax_error(const Loader *L) {
    const yaml_parser_t *p = &L->parser;
    const char *problem = p->problem ? p->problem : "cannot parse";
    if (p->error == YAML_MEMORY_ERROR) gemc_fatal("out of memory parsing YAML");
    if (p->error == YAML_READER_ERROR) {
        // no line: the reader stops at bytes, before there are lines
        if (L->file)
            gemc_set_error("%s: YAML syntax error: %s (byte %zu)", L->file, problem,
                           p->problem_offset + 1);
        else
            gemc_set_error("%s: YAML syntax error: %s", L->place, problem);
        return -1;
    }
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    char ctx[160] = "";
    if (p->context)
        snprintf(ctx, sizeof ctx, " (%s on line %d)", p->context, (int)p->context_mark.line + 1);
    const char *hint = "";
    if (!L->file)
        hint = " (HINT: a value that starts with a quote or '[' is read as YAML: quote the whole "
               "value, e.g. 'a b', or write a list as [a, b])";
    else if (line_has_tab_indent(L, line))
        hint = " (HINT: indent with spaces; YAML does not allow tabs)";
    else if (strstr(problem, "expected key"))
        hint = " (HINT: the keys of a section are indented alike, under the section)";
    if (L->file)
        gemc_set_error("%s:%d:%d: YAML syntax error: %s%s%s", L->file, line, col, problem, ctx,
                       hint);
    else
        gemc_set_error("%s: YAML syntax error at column %d of the value: %s%s%s", L->place, col,
                       problem, ctx, hint);
    return -1;
}

static int next_event(Loader *L, yaml_event_t *ev) {
    if (!yaml_parser_parse(&L->parser, ev)) return syntax_error(L);
    return 0;
}

static int line_of(const yaml_event_t *ev) {
    return (int)ev->start_mark.line + 1;
}

static const char *scalar_text(const yaml_event_t *ev) {
    return (const char *)ev->data.scalar.value;
}

static int is_plain(const yaml_event_t *ev) {
    return ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static int is_null_event(const yaml_event_t *ev) {
    return ev->type == YAML_SCALAR_EVENT && is_plain(ev) && is_null_text(scalar_text(ev));
}

static const char *node_kind(const yaml_event_t *ev) {
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return "a scalar";
    case YAML_SEQUENCE_START_EVENT:
        return "a list";
    case YAML_MAPPING_START_EVENT:
        return "a mapping";
    case YAML_ALIAS_EVENT:
        return "an alias";
    default:
        return "something else";
    }
}

// The items of a YAML sequence (after its SEQUENCE_START) into list key k.
static int read_list(Loader *L, const KeyDef *k) {
    StrList items = {0};
    char why[WHY_MAX];
    for (int index = 1;; index++) {
        yaml_event_t ev;
        if (next_event(L, &ev)) break;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            set_list(L->c, k, &items);
            return 0;
        }
        int rc;
        if (ev.type != YAML_SCALAR_EVENT)
            rc = load_error(L, line_of(&ev), "%s: item %d: expected a string, got %s", k->name,
                            index, node_kind(&ev));
        else if (is_null_event(&ev))
            rc = load_error(L, line_of(&ev), "%s: item %d is empty (HINT: remove the empty item)",
                            k->name, index);
        else if (check_item(k, scalar_text(&ev), ev.data.scalar.length, index, why))
            rc = load_error(L, line_of(&ev), "%s", why);
        else {
            list_push(&items, dup_str(scalar_text(&ev)));
            rc = 0;
        }
        yaml_event_delete(&ev);
        if (rc) break;
    }
    list_free(&items);
    return -1;
}

// The value of key k, starting at its first event `ev` (a list is read to its end).
static int read_value(Loader *L, const KeyDef *k, const yaml_event_t *ev) {
    char why[WHY_MAX];
    int line = line_of(ev);
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if (set_from_scalar(L->c, k, scalar_text(ev), ev->data.scalar.length, is_plain(ev), why))
            return load_error(L, line, "%s", why);
        return 0;
    case YAML_SEQUENCE_START_EVENT:
        if (k->type == K_LIST) return read_list(L, k);
        return load_error(L, line, "%s: expected %s, got a list", k->name, type_phrase(k));
    case YAML_ALIAS_EVENT:
        return load_error(L, line, "%s: YAML aliases (*%s) are not supported; write the value",
                          k->name, (const char *)ev->data.alias.anchor);
    default:
        return load_error(L, line,
                          "%s: expected %s, got %s (HINT: is the next line indented too deep?)",
                          k->name, type_phrase(k), node_kind(ev));
    }
}

// The keys of one section's mapping (after its MAPPING_START), to its MAPPING_END.
static int read_section(Loader *L, int sec) {
    const char *section = SECTIONS[sec];
    for (;;) {
        yaml_event_t ev;
        if (next_event(L, &ev)) return -1;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        int line = line_of(&ev), rc = 0;
        const KeyDef *k = NULL;
        if (ev.type != YAML_SCALAR_EVENT) {
            rc = load_error(L, line, "%s: expected a key name, got %s", section, node_kind(&ev));
        } else {
            const char *leaf = scalar_text(&ev);
            char full[256], hint[512];
            snprintf(full, sizeof full, "%s.%s", section, leaf);
            if (!(k = find_key(full))) {
                suggest_key(section, leaf, hint, sizeof hint);
                rc = load_error(L, line, "unknown key '%s'%s", full, hint);
            } else if (L->key_line[k - KEYS]) {
                rc = load_error(L, line, "duplicate key '%s' (first set on line %d; remove one)",
                                k->name, L->key_line[k - KEYS]);
            } else {
                L->key_line[k - KEYS] = line;
            }
        }
        yaml_event_delete(&ev);
        if (rc) return -1;
        if (next_event(L, &ev)) return -1;
        rc = read_value(L, k, &ev);
        yaml_event_delete(&ev);
        if (rc) return -1;
    }
}

// A top-level name that is no section: the likely mistakes are a key without its section
// ("k"), a section misspelt, a dotted key at the top ("sampling.k"), a key misspelt.
static int unknown_top_level(const Loader *L, const char *name, int line) {
    char hint[512], buf[256];
    const KeyDef *hits[8];
    const KeyDef *k = find_key(name);
    if (k) {
        return load_error(L, line,
                          "unknown section '%s' (HINT: nest the key under its section: '%.*s:' "
                          "and on the next line '  %s: VALUE')",
                          name, (int)(leaf_of(k) - k->name - 1), k->name, leaf_of(k));
    }
    int n = keys_named(name, hits, 8);
    if (n) {
        did_you_mean(hits, n, hint, sizeof hint);
        return load_error(L, line, "unknown key '%s'%s", name, hint);
    }
    const char *near = closest_name(name, SECTIONS, N_SECTIONS);
    if (near) return load_error(L, line, "unknown section '%s' (did you mean '%s'?)", name, near);
    suggest_key(NULL, name, hint, sizeof hint);
    if (hint[0]) return load_error(L, line, "unknown key '%s'%s", name, hint);
    section_list(buf, sizeof buf);
    return load_error(L, line, "unknown section '%s' (the sections are %s)", name, buf);
}

// The top-level mapping (after its MAPPING_START): sections, each a mapping of keys.
static int read_sections(Loader *L) {
    for (;;) {
        yaml_event_t ev;
        if (next_event(L, &ev)) return -1;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        int line = line_of(&ev), rc = 0, sec = -1;
        if (ev.type != YAML_SCALAR_EVENT)
            rc = load_error(L, line, "expected a section name, got %s", node_kind(&ev));
        else if ((sec = find_section(scalar_text(&ev))) < 0)
            rc = unknown_top_level(L, scalar_text(&ev), line);
        else if (L->section_line[sec])
            rc = load_error(L, line,
                            "duplicate section '%s' (first on line %d; put its keys together)",
                            SECTIONS[sec], L->section_line[sec]);
        else
            L->section_line[sec] = line;
        yaml_event_delete(&ev);
        if (rc) return -1;

        if (next_event(L, &ev)) return -1;
        if (ev.type == YAML_MAPPING_START_EVENT) {
            rc = read_section(L, sec);
        } else if (!is_null_event(&ev)) {
            // "model: runs/x" or "sampling: 4": the section given a value
            char hint[512];
            suggest_key(NULL, SECTIONS[sec], hint, sizeof hint);
            rc = load_error(L, line_of(&ev),
                            "section '%s' must hold keys, got %s%s (HINT: write '%s:' and on the "
                            "next lines '  KEY: VALUE')",
                            SECTIONS[sec], node_kind(&ev), hint, SECTIONS[sec]);
        }
        yaml_event_delete(&ev);
        if (rc) return -1;
    }
}

// A whole file: at most one document, a mapping of sections (or empty).
static int read_document(Loader *L) {
    yaml_event_t ev;
    if (next_event(L, &ev)) return -1; // STREAM_START
    yaml_event_delete(&ev);
    if (next_event(L, &ev)) return -1;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        return 0; // no document: nothing but comments
    }
    yaml_event_delete(&ev); // DOCUMENT_START
    if (next_event(L, &ev)) return -1;
    int rc = 0;
    if (ev.type == YAML_MAPPING_START_EVENT)
        rc = read_sections(L);
    else if (!is_null_event(&ev))
        rc = load_error(L, line_of(&ev),
                        "expected a mapping of sections (e.g. 'sampling:' and on the next line "
                        "'  k: 4'), got %s",
                        node_kind(&ev));
    yaml_event_delete(&ev);
    if (rc) return -1;
    if (next_event(L, &ev)) return -1; // DOCUMENT_END
    yaml_event_delete(&ev);
    if (next_event(L, &ev)) return -1;
    if (ev.type != YAML_STREAM_END_EVENT)
        rc = load_error(L, line_of(&ev),
                        "a second YAML document (HINT: one configuration per file; remove the "
                        "'---')");
    yaml_event_delete(&ev);
    return rc;
}

int config_load_yaml(GemConfig *c, const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        gemc_set_error("%s: is a directory (HINT: name the YAML file, e.g. configs/demo.yaml)",
                       path);
        return -1;
    }
    size_t len;
    char *text = read_text_file(path, &len);
    if (!text) return -1;

    GemConfig work;
    config_copy(&work, c);
    Loader L = {.file = path, .text = text, .text_len = len, .c = &work};
    L.key_line = callocCheck(N_KEYS, sizeof(int));
    L.section_line = callocCheck(N_SECTIONS, sizeof(int));
    if (!yaml_parser_initialize(&L.parser)) gemc_fatal("out of memory");
    yaml_parser_set_input_string(&L.parser, (const unsigned char *)text, len);
    int rc = read_document(&L);
    yaml_parser_delete(&L.parser);
    free(L.key_line);
    free(L.section_line);
    free(text);

    if (rc) {
        config_free(&work);
        return -1;
    }
    free(work.source);
    work.source = dup_str(path);
    config_free(c);
    *c = work;
    return 0;
}

// ---- one value from text (a KEY=VALUE override)

// A quoted scalar or a flow sequence ([a, b]), read by libyaml as a one-value document.
int set_from_yaml_text(GemConfig *c, const KeyDef *k, const char *text, const char *place) {
    Loader L = {.place = place, .text = text, .text_len = strlen(text), .c = c};
    if (!yaml_parser_initialize(&L.parser)) gemc_fatal("out of memory");
    yaml_parser_set_input_string(&L.parser, (const unsigned char *)text, L.text_len);
    yaml_event_t ev;
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) { // STREAM_START, DOCUMENT_START
        if ((rc = next_event(&L, &ev)) == 0) yaml_event_delete(&ev);
    }
    if (rc == 0 && (rc = next_event(&L, &ev)) == 0) {
        rc = read_value(&L, k, &ev);
        yaml_event_delete(&ev);
    }
    if (rc == 0 && (rc = next_event(&L, &ev)) == 0) yaml_event_delete(&ev); // DOCUMENT_END
    if (rc == 0 && (rc = next_event(&L, &ev)) == 0) {
        if (ev.type != YAML_STREAM_END_EVENT)
            rc = load_error(&L, 0, "unexpected text after the value (HINT: quote the whole value)");
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&L.parser);
    return rc;
}

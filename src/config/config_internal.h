// The table of configuration keys and what the three files of the configuration share:
// config_keys.c (the table; text into typed, checked values), config_yaml.c (reading YAML) and
// config.c (the rest of config.h). Not a public header: the rest of the program uses config.h.
#ifndef GEMC_CONFIG_INTERNAL_H
#define GEMC_CONFIG_INTERNAL_H

#include <stddef.h>

#include "config/config.h"

// ---- the table (config_keys.c)

typedef enum { K_INT, K_U64, K_FLOAT, K_BOOL, K_STR, K_ENUM, K_LIST } KeyType;

// The names of an enum key and the values they stand for; for a string key with a fixed set of
// values, the names alone. Terminated by {0}.
typedef struct {
    const char *name;
    int value;
} Choice;

// The allowed values of a number key: the bounds its flags turn on, each closed unless *_OPEN.
enum { R_LO = 1, R_LO_OPEN = 2, R_HI = 4, R_HI_OPEN = 8 };
typedef struct {
    double lo, hi;
    int flags;
} Range;

enum {
    F_NONEMPTY = 1,     // a string that must not be ""
    F_WHOLE_ABOVE_1 = 2 // a float that is a fraction below 1 and a count from 1 on (score.top_m)
};

typedef struct {
    const char *name; // "section.key"
    KeyType type;
    size_t off;      // into GemConfig
    const char *def; // the default, as a user writes it
    Range range;     // K_INT, K_FLOAT
    const Choice *choices;
    int flags;
    const char *help;
} KeyDef;

// Every key, each section's keys together, sections in the order of SECTIONS.
extern const KeyDef KEYS[];
extern const int N_KEYS;
// The section names, in the order config.yaml lists them.
extern const char *const SECTIONS[];
extern const int N_SECTIONS;
// The names of two enums' values, for entropy_source_name and final_span_name.
extern const Choice ENTROPY_SOURCES[], FINAL_SPANS[], REWARD_SOURCES[];

// ---- helpers (config_keys.c)

char *dup_str(const char *s); // never NULL
// The field of key k in c.
const void *cfield(const GemConfig *c, const KeyDef *k);
// The name after the section's dot ("k" of "sampling.k").
const char *leaf_of(const KeyDef *k);
// 1 when k is in `section` (the name up to the dot).
int in_section(const KeyDef *k, const char *section);
const KeyDef *find_key(const char *name); // NULL when unknown
int find_section(const char *name);       // the index in SECTIONS, or -1
// A YAML plain scalar that means "no value".
int is_null_text(const char *s);
void list_free(StrList *l);
void list_push(StrList *l, char *s); // takes s over

// The "why" of a failed value: the key and what is wrong, without the location, which the
// caller knows (a file and line, or the command line) and puts in front. why_set writes it
// into a WHY_MAX buffer and returns -1.
#define WHY_MAX 768
int why_set(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// What a key's value should be, for messages: "an integer", "a list of strings", ...
const char *type_phrase(const KeyDef *k);
// The names of ch joined by sep, into buf.
void choice_list(const Choice *ch, const char *sep, char *buf, size_t n);
// The message of a name that is none of k's choices (with "did you mean"); returns -1.
int choice_error(const KeyDef *k, const char *text, int plain, char *why);
// "0 < x <= 1", "x >= 1": the range as --help shows it.
void range_inequality(const Range *r, char *buf, size_t n);
// The checks of a value once parsed, shared by parsing and config_check: 0, or -1 with why.
int check_number(const KeyDef *k, double v, const char *text, char *why);
int check_string(const KeyDef *k, const char *s, int plain, char *why);
int check_item(const KeyDef *k, const char *s, size_t len, int index, char *why);
// Replaces the list of k with `items` (taken over).
void set_list(GemConfig *c, const KeyDef *k, StrList *items);
// One scalar's text into key k (a list key takes "a,b"); `plain`: the YAML plain style, where
// null, ~ and empty mean "no value". 0, or -1 with why and k unchanged.
int set_from_scalar(GemConfig *c, const KeyDef *k, const char *text, size_t len, int plain,
                    char *why);

// "Did you mean": the keys named `leaf` in any section (at most max); " (did you mean 'a' or
// 'b'?)" of hits; the suggestion for an unknown key "section.leaf" ("" when nothing is close);
// "run, model, ..." of the sections.
int keys_named(const char *leaf, const KeyDef **hits, int max);
void did_you_mean(const KeyDef **hits, int n, char *out, size_t size);
void suggest_key(const char *section, const char *leaf, char *out, size_t size);
void section_list(char *buf, size_t size);

// A deep copy of src (strings and lists duplicated), to be freed with config_free.
void config_copy(GemConfig *dst, const GemConfig *src);

// ---- reading YAML (config_yaml.c)

// A KEY=VALUE override's value that is a quoted scalar or a flow sequence ([a, b]), read by
// libyaml as a one-value document into k. 0, or -1 with the error recorded (`place` in front).
int set_from_yaml_text(GemConfig *c, const KeyDef *k, const char *text, const char *place);

#endif

// JSONL data (docs/algorithm.md section 7), one object a line, parsed with cJSON.
//   pairs:   {"prompt", "chosen", "rejected"}, or the medical form
//            {"question", "answer_pos", "answer_neg"}; an object with fields of both forms is
//            an error (which one is the prompt would be a guess)
//   prompts: {"prompt"} (or {"question"}, as GSM8K writes it; not both) with an optional
//            "answer" (a string or a number; null is no answer), read by eval only
// Field names are matched case-sensitively; other fields are ignored, but one of
// these given twice in an object is an error (cJSON would keep the first, Python the last), as
// is a \u0000 escape (it would cut the C string short). A UTF-8 byte-order mark at the start of
// the file is skipped.
// Every defect is reported as "FILE:LINE: what is wrong" (HINT where one helps) and the load
// fails: malformed JSON, invalid UTF-8, a missing or wrongly typed field, an empty file, a line
// longer than max_line_bytes, and (dataset_tokenize) a prompt the model's context cannot hold.
#ifndef GEMC_DATA_H
#define GEMC_DATA_H

#include "text/chat_template.h"
#include "base/intvec.h"
#include "text/tokenizer.h"

typedef enum { DATA_PAIRS, DATA_PROMPTS } DataKind;

#define DATA_MAX_LINE_BYTES_DEFAULT (1 << 20)

typedef struct {
    int line;       // 1-based line in the file
    char *prompt;   // the user turn, before the chat template
    char *chosen;   // pairs: the preferred response (NULL for prompts)
    char *rejected; // pairs: the dispreferred response (NULL for prompts)
    char *answer;   // prompts: the reference answer, or NULL (numbers kept as written)
    // filled by dataset_tokenize:
    IntVec prompt_ids;   // templated prompt, generation header included, no special tokens added
    IntVec chosen_ids;   // pairs: chosen + end-of-turn token
    IntVec rejected_ids; // pairs: rejected + end-of-turn token
} DataRecord;

typedef struct {
    char *path;
    DataKind kind;
    DataRecord *rec;
    int n;
} Dataset;

// Loads a JSONL file. Blank lines are skipped; a "\r\n" line end is accepted. max_line_bytes
// <= 0 means DATA_MAX_LINE_BYTES_DEFAULT. Returns 0, or -1 with the error recorded and nothing
// left allocated.
int dataset_load(Dataset *ds, const char *path, DataKind kind, long max_line_bytes);
// Tokenizes every record through the chat template. n_ctx is the model's context
// (max_position_embeddings): a prompt that leaves no room for a response token, or a pair whose
// prompt + response does not fit, is an error naming the file and line. Returns 0, or -1 with
// the error recorded and every id vector emptied (the loaded text stays). Calling it again
// replaces the ids.
int dataset_tokenize(Dataset *ds, Tokenizer *tok, ChatTemplate tmpl, const char *system, int eos_id,
                     int n_ctx);
void dataset_free(Dataset *ds);

#endif

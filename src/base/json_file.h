// JSON files as Hugging Face writes them (two-space indentation, a final newline), atomically.
#ifndef GEMC_JSON_FILE_H
#define GEMC_JSON_FILE_H

#include <cJSON.h>

// Writes root to path (temp file, fsync, rename) and deletes root. Returns 0, or -1 with the
// error recorded.
int json_write_file(const char *path, cJSON *root);

// Parses the NUL-terminated text of a JSON file. Returns the tree, or NULL with the error
// recorded as "PATH: not valid JSON (syntax error at line L, column C)".
cJSON *json_parse(const char *text, const char *path);

#endif

// Chat templates: how a prompt (and an optional system prompt) becomes the text the model sees.
// Only three are implemented, as fixed code rather than Jinja: they are the formats gemc aligns.
//   chatml  (Qwen)     <|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nPROMPT<|im_end|>\n
//                      <|im_start|>assistant\n                                   end: <|im_end|>
//   llama3             <|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|>
//                      <|start_header_id|>user<|end_header_id|>\n\nPROMPT<|eot_id|>
//                      <|start_header_id|>assistant<|end_header_id|>\n\n  end: <|eot_id|>
//                      (contents trimmed of surrounding whitespace, as Meta's template does)
//   plain              SYS\n\nPROMPT\n                                           end: the EOS token
#ifndef GEMC_CHAT_TEMPLATE_H
#define GEMC_CHAT_TEMPLATE_H

#include "base/strbuf.h"
#include "text/tokenizer.h"

typedef enum { CHAT_PLAIN, CHAT_CHATML, CHAT_LLAMA3 } ChatTemplate;

// The plain template in Jinja, as gemc writes it into tokenizer_config.json so that
// transformers' apply_chat_template gives the same text; chat_template_detect knows it.
extern const char CHAT_PLAIN_JINJA[];

// "plain" | "chatml" | "llama3" -> template. Returns -1 with the error recorded otherwise
// (naming `what`, e.g. "config.yaml: chat_template", and the closest valid name).
int chat_template_from_name(const char *name, const char *what, ChatTemplate *out);
const char *chat_template_name(ChatTemplate t);
// Recognises the template of a tokenizer_config.json (its "chat_template" string). A file
// without one is plain. Returns -1 with the error recorded when the file is unreadable or its
// template is none of the three (HINT: set chat_template in the config).
int chat_template_detect(const char *tokenizer_config_path, ChatTemplate *out);

// The template a run uses: `name` when it is one of the three, or (NULL, "" or "auto") the one
// recognised in DIR/tokenizer_config.json, plain when the folder has no such file. `what` names
// the setting in errors ("--chat-template", "config: model.chat_template"). Returns 0 or -1.
int chat_template_resolve(const char *name, const char *what, const char *model_dir,
                          ChatTemplate *out);

// Appends the templated conversation: the system turn (when system is non-NULL and non-empty),
// the user turn, and with add_generation_prompt the header that opens the assistant's turn.
void chat_format(ChatTemplate t, const char *system, const char *prompt, int add_generation_prompt,
                 StrBuf *out);
// The token that closes the assistant's turn: <|im_end|>, <|eot_id|>, or for plain the model's
// EOS (eos_id). Returns -1 with the error recorded when the tokenizer lacks the token.
int chat_end_of_turn_id(ChatTemplate t, const Tokenizer *tok, int eos_id);

#endif

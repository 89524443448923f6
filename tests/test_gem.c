// The GEM objective (src/gem/gem.c) on hand-made numbers: every Eq. 1 span rule, filtering and the
// reward mappings, SEGA and DPO gradients against central finite differences, no padding in any
// score or loss, and the evaluation helpers.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gem/gem.h"
#include "model/model.h"
#include "base/rng.h"
#include "model/sampler.h"
#include "stages/stage.h"
#include "tests.h"

#define TOK_EOS 257  // <|end_of_text|> of the byte-level tokenizer
#define JUNK    1e6f // what a padded buffer holds past a candidate's end

// ---- helpers -----------------------------------------------------------------------------------

static ScoreConfig score_cfg(FinalSpan span) {
    ScoreConfig c = {.entropy_source = ENTROPY_RAW,
                     .final_span = span,
                     .answer_marker = (char *)"Final Answer:",
                     .final_split = 0.75f,
                     .final_window = 3,
                     .top_m = 0.1f,
                     .lambda_fork = 1.0f,
                     .lambda_final = 1.0f};
    return c;
}

static SegaConfig sega_cfg(void) {
    SegaConfig s = {.reward_mapping = REWARD_IDENTITY,
                    .reward_temperature = 1.0f,
                    .adv_norm = ADV_NONE,
                    .logp_agg = LOGP_SUM,
                    .clip_eps = 0.2f,
                    .kl_coef = 0.0f};
    return s;
}

// A candidate whose n tokens (ids, entropies H) sit in buffers of cap >= n entries, junk beyond.
// logp_raw = logp_sample = -H and entropy_sample = 2H, so that each source is distinguishable.
static Candidate make_cand(int n, const int *ids, const float *H, FinishReason finish, int cap) {
    Candidate c = {.n = n, .finish = finish};
    const size_t m = cap > 0 ? (size_t)cap : 1;
    c.ids = malloc(m * sizeof(int));
    c.logp_sample = malloc(m * sizeof(float));
    c.logp_raw = malloc(m * sizeof(float));
    c.entropy_raw = malloc(m * sizeof(float));
    c.entropy_sample = malloc(m * sizeof(float));
    for (int i = 0; i < cap; i++) {
        const int in = i < n;
        c.ids[i] = in ? ids[i] : 'Z';
        c.entropy_raw[i] = in ? H[i] : JUNK;
        c.entropy_sample[i] = in ? 2.0f * H[i] : JUNK;
        c.logp_raw[i] = c.logp_sample[i] = in ? -H[i] : -JUNK;
    }
    return c;
}

static void free_cand(Candidate *c) {
    free(c->ids);
    free(c->logp_sample);
    free(c->logp_raw);
    free(c->entropy_raw);
    free(c->entropy_sample);
}

// The byte-level tokens of text (token b = byte b), followed by an EOS of entropy 100 when eos.
static Candidate text_cand(const char *text, const float *H, int eos, int cap) {
    const int n = (int)strlen(text) + (eos ? 1 : 0);
    int *ids = malloc(sizeof(int) * (size_t)n);
    float *h = malloc(sizeof(float) * (size_t)n);
    for (int i = 0; i < (int)strlen(text); i++) {
        ids[i] = (unsigned char)text[i];
        h[i] = H[i];
    }
    if (eos) {
        ids[n - 1] = TOK_EOS;
        h[n - 1] = 100.0f;
    }
    Candidate c = make_cand(n, ids, h, eos ? FINISH_EOS : FINISH_LENGTH, cap > n ? cap : n);
    free(ids);
    free(h);
    return c;
}

static void fill(float *H, int n, float v) {
    for (int i = 0; i < n; i++) H[i] = v;
}

static int same_score(const CandidateScore *a, const CandidateScore *b) {
    return a->score == b->score && a->fork == b->fork && a->final == b->final &&
           a->n_cot == b->n_cot && a->n_final == b->n_final && a->used_marker == b->used_marker;
}

// ---- Eq. 1 -----------------------------------------------------------------------------------

// "ab cd Final Answer: 42 ok" in seven tokens; the marker covers bytes [6, 19).
//   t0 "ab" [0,2)  t1 " cd" [2,5)  | t2 " Fi" [5,8) straddles the start, t3 "nal Answer" [8,18)
//   inside, t4 ": " [18,20) straddles the end |  t5 "42" [20,22)  t6 " ok" [22,25)
// CoT = t0, t1; final = t5, t6; the straddling tokens (entropy 9) are in neither.
static void test_marker_straddling(void) {
    const char *text = "ab cd Final Answer: 42 ok";
    const int tok_end[7] = {2, 5, 8, 18, 20, 22, 25};
    const float H[7] = {0.5f, 2.0f, 9.0f, 9.0f, 9.0f, 0.25f, 0.75f};
    ScoreConfig c = score_cfg(SPAN_MARKER);
    CandidateScore s;
    gem_score_tokens(&c, H, 7, text, tok_end, &s);
    CU_ASSERT_EQUAL(s.used_marker, 1);
    CU_ASSERT_EQUAL(s.n_cot, 2);
    CU_ASSERT_EQUAL(s.n_final, 2);
    ASSERT_CLOSE(s.fork, 2.0, 1e-6);  // m = max(1, ceil(0.1 * 2)) = 1: the largest, 2.0
    ASSERT_CLOSE(s.final, 0.5, 1e-6); // (0.25 + 0.75) / 2
    ASSERT_CLOSE(s.score, 1.5, 1e-6); // -0.5 + 1.0 * 2.0
    c.top_m = 0.9f;                   // m = ceil(1.8) = 2: (0.5 + 2.0) / 2
    gem_score_tokens(&c, H, 7, text, tok_end, &s);
    ASSERT_CLOSE(s.fork, 1.25, 1e-6);
    ASSERT_CLOSE(s.score, 0.75, 1e-6);
}

// "Final Answer: 1 no. Final Answer: 2" + EOS, byte tokens: the second marker at [20, 33) wins.
// CoT = bytes 0..19 (the first marker included), final = " 2" (bytes 33, 34).
static void test_marker_last_occurrence(void) {
    Tokenizer *tok = test_byte_tokenizer();
    const char *text = "Final Answer: 1 no. Final Answer: 2";
    float H[35];
    fill(H, 35, 50.0f);        // the second marker: in neither span
    fill(H, 20, 0.1f);         // CoT
    H[3] = 3.0f, H[14] = 1.0f; // its two forks
    H[33] = 0.2f, H[34] = 0.4f;
    Candidate cand = text_cand(text, H, 1, 0);
    ScoreConfig c = score_cfg(SPAN_MARKER);
    CandidateScore s;
    CU_ASSERT_EQUAL_FATAL(gem_score_candidate(&c, tok, &cand, &s), 0);
    CU_ASSERT_EQUAL(s.used_marker, 1);
    CU_ASSERT_EQUAL(s.n_cot, 20);
    CU_ASSERT_EQUAL(s.n_final, 2);
    // m = ceil(0.1 * 20) = 2 (0.1f * 20 is 2.0000000298 in double: 3 would be wrong)
    ASSERT_CLOSE(s.fork, 2.0, 1e-6);  // (3.0 + 1.0) / 2
    ASSERT_CLOSE(s.final, 0.3, 1e-6); // (0.2 + 0.4) / 2, the EOS (100) left out
    ASSERT_CLOSE(s.score, 1.7, 1e-6);
    c.lambda_fork = 0.5f; // -0.3 + 0.5 * 2.0
    CU_ASSERT_EQUAL_FATAL(gem_score_candidate(&c, tok, &cand, &s), 0);
    ASSERT_CLOSE(s.score, 0.7, 1e-6);
    free_cand(&cand);
    tokenizer_free(tok);
}

// No marker: the fraction rule. 8 tokens, final_split 0.75: CoT = 6 tokens, final = 2.
static void test_marker_absent_falls_back(void) {
    Tokenizer *tok = test_byte_tokenizer();
    const float H[8] = {1, 2, 3, 4, 5, 6, 0.5f, 1.5f};
    Candidate cand = text_cand("abcdefgh", H, 1, 0);
    ScoreConfig c = score_cfg(SPAN_MARKER);
    c.top_m = 0.5f; // m = ceil(0.5 * 6) = 3: (6 + 5 + 4) / 3 = 5
    CandidateScore s, f;
    CU_ASSERT_EQUAL_FATAL(gem_score_candidate(&c, tok, &cand, &s), 0);
    CU_ASSERT_EQUAL(s.used_marker, 0);
    CU_ASSERT_EQUAL(s.n_cot, 6);
    CU_ASSERT_EQUAL(s.n_final, 2);
    ASSERT_CLOSE(s.fork, 5.0, 1e-6);
    ASSERT_CLOSE(s.final, 1.0, 1e-6);
    ASSERT_CLOSE(s.score, 4.0, 1e-6);
    c.final_span = SPAN_FRACTION; // the same spans without a tokenizer
    CU_ASSERT_EQUAL_FATAL(gem_score_candidate(&c, NULL, &cand, &f), 0);
    CU_ASSERT(same_score(&s, &f));
    // the marker rule cannot look for its marker without a tokenizer
    c.final_span = SPAN_MARKER;
    CU_ASSERT_EQUAL(gem_score_candidate(&c, NULL, &cand, &f), -1);
    free_cand(&cand);
    tokenizer_free(tok);
}

static float fork_with(float top_m, const float *H, int n) {
    ScoreConfig c = score_cfg(SPAN_FRACTION);
    c.top_m = top_m;
    CandidateScore s;
    gem_score_tokens(&c, H, n, NULL, NULL, &s);
    return s.fork;
}

// CoT = {1, 2, 3, 4, 5, 6} (fraction rule, 8 tokens).
static void test_top_m_fraction_and_count(void) {
    const float H[8] = {1, 2, 3, 4, 5, 6, 0.5f, 1.5f};
    ASSERT_CLOSE(fork_with(0.1f, H, 8), 6.0, 1e-6);  // ceil(0.6) = 1
    ASSERT_CLOSE(fork_with(0.0f, H, 8), 6.0, 1e-6);  // max(1, 0) = 1
    ASSERT_CLOSE(fork_with(0.5f, H, 8), 5.0, 1e-6);  // ceil(3) = 3
    ASSERT_CLOSE(fork_with(0.51f, H, 8), 4.5, 1e-6); // ceil(3.06) = 4: (6+5+4+3) / 4
    ASSERT_CLOSE(fork_with(1.0f, H, 8), 6.0, 1e-6);  // a count of 1
    ASSERT_CLOSE(fork_with(2.0f, H, 8), 5.5, 1e-6);  // (6 + 5) / 2
    ASSERT_CLOSE(fork_with(2.7f, H, 8), 5.5, 1e-6);  // floor(2.7) = 2
    ASSERT_CLOSE(fork_with(6.0f, H, 8), 3.5, 1e-6);  // all six: 21 / 6
    ASSERT_CLOSE(fork_with(10.0f, H, 8), 3.5, 1e-6); // clamped to |CoT| = 6
    // the order of the CoT tokens does not matter
    const float R[8] = {4, 6, 1, 5, 2, 3, 0.5f, 1.5f};
    ASSERT_CLOSE(fork_with(0.5f, R, 8), 5.0, 1e-6);
}

static void test_fraction_rule(void) {
    float H[10];
    for (int i = 0; i < 10; i++) H[i] = (float)i;
    ScoreConfig c = score_cfg(SPAN_FRACTION);
    c.final_split = 0.7f; // 0.7f * 10 = 6.99999988 in double: still 7 CoT tokens
    c.top_m = 1.0f;
    CandidateScore s;
    gem_score_tokens(&c, H, 10, NULL, NULL, &s);
    CU_ASSERT_EQUAL(s.n_cot, 7);
    CU_ASSERT_EQUAL(s.n_final, 3);
    ASSERT_CLOSE(s.fork, 6.0, 1e-6);  // the largest of 0..6
    ASSERT_CLOSE(s.final, 8.0, 1e-6); // (7 + 8 + 9) / 3
    ASSERT_CLOSE(s.score, -2.0, 1e-6);
    c.final_split = 0.75f; // floor(7.5) = 7
    gem_score_tokens(&c, H, 10, NULL, NULL, &s);
    CU_ASSERT_EQUAL(s.n_cot, 7);
}

static void test_window_rule(void) {
    const float H[6] = {4, 1, 2, 0.5f, 0.25f, 0.75f};
    ScoreConfig c = score_cfg(SPAN_WINDOW);
    c.top_m = 1.0f;
    CandidateScore s;
    gem_score_tokens(&c, H, 6, NULL, NULL, &s);
    CU_ASSERT_EQUAL(s.n_cot, 3);
    CU_ASSERT_EQUAL(s.n_final, 3);
    ASSERT_CLOSE(s.fork, 4.0, 1e-6);
    ASSERT_CLOSE(s.final, 0.5, 1e-6); // (0.5 + 0.25 + 0.75) / 3
    ASSERT_CLOSE(s.score, 3.5, 1e-6);
    c.lambda_fork = 2.0f; // -0.5 + 2 * 4
    c.final_window = 1;   // final = 0.75 alone
    gem_score_tokens(&c, H, 6, NULL, NULL, &s);
    CU_ASSERT_EQUAL(s.n_cot, 5);
    ASSERT_CLOSE(s.score, -0.75 + 2.0 * 4.0, 1e-6);
}

static void test_empty_spans(void) {
    const float H[3] = {1.0f, 2.0f, 6.0f};
    CandidateScore s;
    // window longer than the candidate: everything is final, the CoT span is empty, fork 0
    ScoreConfig c = score_cfg(SPAN_WINDOW);
    c.final_window = 5;
    gem_score_tokens(&c, H, 3, NULL, NULL, &s);
    CU_ASSERT_EQUAL(s.n_cot, 0);
    CU_ASSERT_EQUAL(s.n_final, 3);
    CU_ASSERT_EQUAL(s.fork, 0.0f);
    ASSERT_CLOSE(s.score, -3.0, 1e-6);
    // one token under the fraction rule: floor(0.75) = 0 CoT tokens
    c = score_cfg(SPAN_FRACTION);
    gem_score_tokens(&c, H + 2, 1, NULL, NULL, &s);
    CU_ASSERT_EQUAL(s.n_cot, 0);
    CU_ASSERT_EQUAL(s.fork, 0.0f);
    ASSERT_CLOSE(s.score, -6.0, 1e-6);
    // the marker at the very start: an empty CoT span
    c = score_cfg(SPAN_MARKER);
    const char *t1 = "Final Answer: 7";
    int end1[15];
    float H1[15];
    for (int i = 0; i < 15; i++) end1[i] = i + 1, H1[i] = 9.0f;
    H1[13] = 1.0f, H1[14] = 2.0f;
    gem_score_tokens(&c, H1, 15, t1, end1, &s);
    CU_ASSERT_EQUAL(s.used_marker, 1);
    CU_ASSERT_EQUAL(s.n_cot, 0);
    CU_ASSERT_EQUAL(s.fork, 0.0f);
    ASSERT_CLOSE(s.final, 1.5, 1e-6);
    // the marker at the very end, or followed by spaces only: no answer, so no final span to
    // score (an empty one would score 0, the best there is); the fraction rule applies:
    // 16 tokens, CoT = the first 12, final = the last 4 (entropy 9), fork = top 2 of the CoT
    const char *t2 = "ab Final Answer:  ";
    int end2[18];
    float H2[18];
    for (int i = 0; i < 18; i++) end2[i] = i + 1, H2[i] = 9.0f;
    H2[0] = 3.0f, H2[1] = 1.0f, H2[2] = 2.0f, H2[3] = 4.0f;
    for (int n = 16; n <= 18; n++) {
        gem_score_tokens(&c, H2, n, t2, end2, &s);
        CU_ASSERT_EQUAL(s.used_marker, 0);
        CU_ASSERT_EQUAL(s.n_cot, (int)(0.75 * n));
        CU_ASSERT_EQUAL(s.n_final, n - (int)(0.75 * n));
        ASSERT_CLOSE(s.final, 9.0, 1e-6);
    }
    // no tokens at all
    gem_score_tokens(&c, H, 0, "", NULL, &s);
    CU_ASSERT_EQUAL(s.score, 0.0f);
    CU_ASSERT_EQUAL(s.n_cot + s.n_final, 0);
}

// The EOS is not a content token: a candidate ending at EOS scores as its tokens without it.
static void test_eos_excluded(void) {
    const float H[6] = {4, 1, 2, 0.5f, 0.25f, 0.75f};
    Candidate with_eos = text_cand("abcdef", H, 1, 0); // 7 tokens, the EOS at entropy 100
    Candidate cut = text_cand("abcdef", H, 0, 0);      // the same 6 tokens, cut at the length
    CU_ASSERT_EQUAL(candidate_content_len(&with_eos), 6);
    CU_ASSERT_EQUAL(candidate_content_len(&cut), 6);
    const FinalSpan spans[3] = {SPAN_MARKER, SPAN_FRACTION, SPAN_WINDOW};
    Tokenizer *tok = test_byte_tokenizer();
    for (int i = 0; i < 3; i++) {
        ScoreConfig c = score_cfg(spans[i]);
        CandidateScore a, b;
        CU_ASSERT_EQUAL_FATAL(gem_score_candidate(&c, tok, &with_eos, &a), 0);
        CU_ASSERT_EQUAL_FATAL(gem_score_candidate(&c, tok, &cut, &b), 0);
        CU_ASSERT(same_score(&a, &b));
        CU_ASSERT_EQUAL(a.n_cot + a.n_final, 6);
    }
    ScoreConfig c = score_cfg(SPAN_WINDOW);
    CandidateScore s;
    CU_ASSERT_EQUAL_FATAL(gem_score_candidate(&c, tok, &with_eos, &s), 0);
    ASSERT_CLOSE(s.final, 0.5, 1e-6); // the last three content tokens, not the EOS
    // an EOS alone: nothing to score
    const int eos = TOK_EOS;
    const float h = 5.0f;
    Candidate only = make_cand(1, &eos, &h, FINISH_EOS, 1);
    CU_ASSERT_EQUAL(candidate_content_len(&only), 0);
    CU_ASSERT_EQUAL_FATAL(gem_score_candidate(&c, tok, &only, &s), 0);
    CU_ASSERT_EQUAL(s.score, 0.0f);
    Candidate none = {.n = 0, .finish = FINISH_LENGTH};
    CU_ASSERT_EQUAL(candidate_content_len(&none), 0);
    free_cand(&only);
    free_cand(&with_eos);
    free_cand(&cut);
    tokenizer_free(tok);
}

static void test_entropy_source(void) {
    const float H[4] = {1, 3, 0.5f, 0.25f}; // entropy_sample = 2H
    Candidate cand = make_cand(4, (const int[]){'a', 'b', 'c', 'd'}, H, FINISH_LENGTH, 4);
    ScoreConfig c = score_cfg(SPAN_WINDOW);
    c.final_window = 2;
    c.top_m = 1.0f;
    CandidateScore raw, smp;
    CU_ASSERT_EQUAL(gem_score_candidate(&c, NULL, &cand, &raw), 0);
    c.entropy_source = ENTROPY_SAMPLING;
    CU_ASSERT_EQUAL(gem_score_candidate(&c, NULL, &cand, &smp), 0);
    ASSERT_CLOSE(raw.score, -0.375 + 3.0, 1e-6);
    ASSERT_CLOSE(smp.score, -0.75 + 6.0, 1e-6);
    free_cand(&cand);
}

// ---- no padding
// ----------------------------------------------------------------------------------

// The same candidate in exact buffers and in buffers twice as long with junk after its EOS.
static void test_no_padding_in_scores(void) {
    Tokenizer *tok = test_byte_tokenizer();
    const char *text = "x+y=3 so Final Answer: 3";
    float H[24];
    for (int i = 0; i < 24; i++) H[i] = 0.1f * (float)((i * 7) % 11);
    const FinalSpan spans[3] = {SPAN_MARKER, SPAN_FRACTION, SPAN_WINDOW};
    for (int eos = 0; eos < 2; eos++) {
        Candidate exact = text_cand(text, H, eos, 0);
        Candidate padded = text_cand(text, H, eos, 64);
        for (int i = 0; i < 3; i++) {
            for (int src = 0; src < 2; src++) {
                ScoreConfig c = score_cfg(spans[i]);
                c.entropy_source = src ? ENTROPY_SAMPLING : ENTROPY_RAW;
                c.top_m = 0.3f;
                CandidateScore a, b;
                CU_ASSERT_EQUAL_FATAL(gem_score_candidate(&c, tok, &exact, &a), 0);
                CU_ASSERT_EQUAL_FATAL(gem_score_candidate(&c, tok, &padded, &b), 0);
                CU_ASSERT(same_score(&a, &b));
                CU_ASSERT(a.score > -10.0f && a.score < 10.0f); // no junk (1e6) got in
            }
        }
        free_cand(&exact);
        free_cand(&padded);
    }
    tokenizer_free(tok);
}

static void test_no_padding_in_loss(void) {
    enum { N = 5, CAP = 12 };
    const float l[N] = {-1.25f, -0.5f, -2.0f, -0.75f, -3.5f};
    const float old[N] = {-1.3f, -1.0f, -1.4f, -0.65f, -3.75f};
    const float ref[N] = {-1.0f, -0.75f, -2.5f, -0.5f, -3.0f};
    float lp[CAP], oldp[CAP], refp[CAP];
    for (int i = 0; i < CAP; i++) {
        lp[i] = i < N ? l[i] : -JUNK;
        oldp[i] = i < N ? old[i] : JUNK;
        refp[i] = i < N ? ref[i] : JUNK;
    }
    for (int mode = 0; mode < 16; mode++) {
        SegaConfig s = sega_cfg();
        s.logp_agg = mode & 1 ? LOGP_MEAN : LOGP_SUM;
        s.kl_coef = mode & 2 ? 0.05f : 0.0f;
        s.clip_eps = mode & 4 ? 0.2f : 0.0f;
        const int off = mode >> 3;
        float g1[CAP], g2[CAP];
        for (int i = 0; i < CAP; i++) g1[i] = g2[i] = 12345.0f;
        const double v1 = sega_candidate_loss(&s, 0.3f, 0.125f, l, off ? old : NULL, ref, N, g1);
        const double v2 = sega_candidate_loss(&s, 0.3f, 0.125f, lp, off ? oldp : NULL, refp, N, g2);
        CU_ASSERT_EQUAL(v1, v2);
        CU_ASSERT(fabs(v1) < 10.0);
        CU_ASSERT_EQUAL(memcmp(g1, g2, sizeof g1), 0);
        for (int i = N; i < CAP; i++) CU_ASSERT_EQUAL(g2[i], 12345.0f); // only n written
    }
}

// ---- ranking, rewards, advantages
// ------------------------------------------------------------------

static FilterConfig filter_cfg(void) {
    FilterConfig f = {.drop_truncated = 0, .trim_bottom = 0.0f, .pairs = 0};
    return f;
}

// Candidates of two content tokens and an EOS (ranking reads only n and finish).
static void plain_group(Candidate *cands, CandidateScore *scores, const float *S, int k) {
    for (int i = 0; i < k; i++) {
        cands[i] = (Candidate){.n = 3, .finish = FINISH_EOS};
        scores[i] = (CandidateScore){.value = S[i], .score = S[i]};
    }
}

static void test_rank_identity(void) {
    Candidate c[4];
    CandidateScore sc[4];
    plain_group(c, sc, (const float[]){1.0f, 3.0f, 2.0f, 2.0f}, 4);
    FilterConfig f = filter_cfg();
    SegaConfig s = sega_cfg();
    GroupRanking g;
    group_ranking_alloc(&g, 4);
    gem_rank_group(&f, &s, c, sc, 4, &g);
    CU_ASSERT_EQUAL(g.skipped, 0);
    CU_ASSERT_EQUAL(g.n_valid, 4);
    // descending, the tie between 2 and 3 by index
    CU_ASSERT(g.rank[1] == 0 && g.rank[2] == 1 && g.rank[3] == 2 && g.rank[0] == 3);
    CU_ASSERT_EQUAL(g.best, 1);
    CU_ASSERT_EQUAL(g.worst, 0);
    const float A[4] = {-1, 1, 0, 0}; // r = S, mean 2
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(g.reward[i], sc[i].score);
        ASSERT_CLOSE(g.advantage[i], A[i], 1e-7);
    }
    group_ranking_free(&g);
}

// S = {0, ln 2, ln 3} at T = 1, or halved at T = 0.5: e^(S/T) = 1, 2, 3, so r = 1/6, 2/6, 3/6,
// mean 1/3, A = -1/6, 0, 1/6.
static void test_rank_softmax(void) {
    const float S1[3] = {0.0f, logf(2.0f), logf(3.0f)};
    const float S2[3] = {0.0f, logf(2.0f) / 2, logf(3.0f) / 2};
    const float T[2] = {1.0f, 0.5f};
    for (int v = 0; v < 2; v++) {
        Candidate c[3];
        CandidateScore sc[3];
        plain_group(c, sc, v ? S2 : S1, 3);
        FilterConfig f = filter_cfg();
        SegaConfig s = sega_cfg();
        s.reward_mapping = REWARD_SOFTMAX;
        s.reward_temperature = T[v];
        GroupRanking g;
        group_ranking_alloc(&g, 3);
        gem_rank_group(&f, &s, c, sc, 3, &g);
        for (int i = 0; i < 3; i++) {
            ASSERT_CLOSE(g.reward[i], (i + 1) / 6.0, 1e-6);
            ASSERT_CLOSE(g.advantage[i], (i - 1) / 6.0, 1e-6);
        }
        CU_ASSERT_EQUAL(g.best, 2);
        CU_ASSERT_EQUAL(g.worst, 0);
        group_ranking_free(&g);
    }
    // large scores do not overflow the softmax
    Candidate c[2];
    CandidateScore sc[2];
    plain_group(c, sc, (const float[]){1000.0f, 1000.0f + logf(3.0f)}, 2);
    FilterConfig f = filter_cfg();
    SegaConfig s = sega_cfg();
    s.reward_mapping = REWARD_SOFTMAX;
    GroupRanking g;
    group_ranking_alloc(&g, 2);
    gem_rank_group(&f, &s, c, sc, 2, &g);
    ASSERT_CLOSE(g.reward[0], 0.25, 1e-4);
    ASSERT_CLOSE(g.reward[1], 0.75, 1e-4);
    group_ranking_free(&g);
}

// r = {1, 2, 3, 4}: mean 2.5, sample std sqrt(5/3) = 1.2909944.
static void test_rank_adv_std(void) {
    Candidate c[4];
    CandidateScore sc[4];
    plain_group(c, sc, (const float[]){1, 2, 3, 4}, 4);
    FilterConfig f = filter_cfg();
    SegaConfig s = sega_cfg();
    s.adv_norm = ADV_STD;
    GroupRanking g;
    group_ranking_alloc(&g, 4);
    gem_rank_group(&f, &s, c, sc, 4, &g);
    CU_ASSERT_EQUAL(g.skipped, 0);
    for (int i = 0; i < 4; i++)
        ASSERT_CLOSE(g.advantage[i], (i - 1.5) / (sqrt(5.0 / 3.0) + 1e-6), 1e-6);
    // equal scores: std 0, the group is skipped (all advantages 0, no pair)
    plain_group(c, sc, (const float[]){2, 2, 2, 2}, 4);
    gem_rank_group(&f, &s, c, sc, 4, &g);
    CU_ASSERT_EQUAL(g.skipped, 1);
    CU_ASSERT_EQUAL(g.best, -1);
    CU_ASSERT_EQUAL(g.worst, -1);
    CU_ASSERT_EQUAL(g.n_valid, 4);
    for (int i = 0; i < 4; i++) CU_ASSERT_EQUAL(g.advantage[i], 0.0f);
    // scores differing by less than 1e-6: still skipped, not blown up to +-0.7
    plain_group(c, sc, (const float[]){2.0f, 2.0f, 2.0f, 2.0000002f}, 4);
    gem_rank_group(&f, &s, c, sc, 4, &g);
    CU_ASSERT_EQUAL(g.skipped, 1);
    // without normalisation equal scores are not skipped: every advantage is just 0
    s.adv_norm = ADV_NONE;
    plain_group(c, sc, (const float[]){2, 2, 2, 2}, 4);
    gem_rank_group(&f, &s, c, sc, 4, &g);
    CU_ASSERT_EQUAL(g.skipped, 0);
    for (int i = 0; i < 4; i++) CU_ASSERT_EQUAL(g.advantage[i], 0.0f);
    group_ranking_free(&g);
}

static void test_rank_trim_bottom(void) {
    Candidate c[5];
    CandidateScore sc[5];
    plain_group(c, sc, (const float[]){5, 1, 4, 2, 3}, 5);
    FilterConfig f = filter_cfg();
    SegaConfig s = sega_cfg();
    GroupRanking g;
    group_ranking_alloc(&g, 5);
    f.trim_bottom = 0.25f; // floor(1.25) = 1: S = 1 goes
    gem_rank_group(&f, &s, c, sc, 5, &g);
    CU_ASSERT_EQUAL(g.n_valid, 4);
    CU_ASSERT_EQUAL(g.valid[1], 0);
    CU_ASSERT_EQUAL(g.rank[1], -1);
    CU_ASSERT_EQUAL(g.advantage[1], 0.0f);
    CU_ASSERT_EQUAL(g.worst, 3);
    ASSERT_CLOSE(g.advantage[0], 5 - 3.5, 1e-6); // mean of 5, 4, 2, 3
    ASSERT_CLOSE(g.advantage[3], 2 - 3.5, 1e-6);
    f.trim_bottom = 0.4f; // floor(2.0) = 2 (0.4f * 5 = 2.0000000298): S = 1 and 2 go
    gem_rank_group(&f, &s, c, sc, 5, &g);
    CU_ASSERT_EQUAL(g.n_valid, 3);
    CU_ASSERT(!g.valid[1] && !g.valid[3] && g.valid[0] && g.valid[2] && g.valid[4]);
    CU_ASSERT_EQUAL(g.worst, 4);
    ASSERT_CLOSE(g.advantage[4], -1.0, 1e-6); // mean of 5, 4, 3
    // trimming counts valid candidates only: one empty candidate, 4 valid, floor(0.5 * 4) = 2
    c[0].n = 0;
    f.trim_bottom = 0.5f;
    gem_rank_group(&f, &s, c, sc, 5, &g);
    CU_ASSERT_EQUAL(g.n_valid, 2);
    CU_ASSERT(g.valid[2] && g.valid[4] && !g.valid[0] && !g.valid[1] && !g.valid[3]);
    CU_ASSERT_EQUAL(g.best, 2);
    // trimming down to one candidate skips the group
    Candidate c2[2];
    CandidateScore sc2[2];
    plain_group(c2, sc2, (const float[]){1, 2}, 2);
    gem_rank_group(&f, &s, c2, sc2, 2, &g); // out is resized to k = 2
    CU_ASSERT_EQUAL(g.k, 2);
    CU_ASSERT_EQUAL(g.n_valid, 1);
    CU_ASSERT_EQUAL(g.skipped, 1);
    CU_ASSERT(g.advantage[0] == 0.0f && g.advantage[1] == 0.0f);
    group_ranking_free(&g);
}

static void test_rank_validity(void) {
    Candidate c[4];
    CandidateScore sc[4];
    plain_group(c, sc, (const float[]){1, 2, 3, 4}, 4);
    c[3].finish = FINISH_LENGTH; // truncated, the best score
    c[0].n = 1;                  // an EOS alone: no content tokens
    FilterConfig f = filter_cfg();
    SegaConfig s = sega_cfg();
    GroupRanking g;
    group_ranking_alloc(&g, 4);
    gem_rank_group(&f, &s, c, sc, 4, &g);
    CU_ASSERT(!g.valid[0] && g.valid[1] && g.valid[2] && g.valid[3]);
    CU_ASSERT_EQUAL(g.best, 3);
    CU_ASSERT_EQUAL(g.reward[0], 0.0f);
    ASSERT_CLOSE(g.advantage[3], 1.0, 1e-6); // mean of 2, 3, 4
    f.drop_truncated = 1;
    gem_rank_group(&f, &s, c, sc, 4, &g);
    CU_ASSERT(!g.valid[0] && g.valid[1] && g.valid[2] && !g.valid[3]);
    CU_ASSERT_EQUAL(g.n_valid, 2);
    CU_ASSERT_EQUAL(g.best, 2);
    CU_ASSERT_EQUAL(g.worst, 1);
    ASSERT_CLOSE(g.advantage[2], 0.5, 1e-6);
    CU_ASSERT_EQUAL(g.advantage[3], 0.0f);
    CU_ASSERT_EQUAL(g.rank[3], -1);
    // fewer than 2 valid: skipped, all advantages 0, no pair
    c[1].n = 0;
    gem_rank_group(&f, &s, c, sc, 4, &g);
    CU_ASSERT_EQUAL(g.n_valid, 1);
    CU_ASSERT_EQUAL(g.skipped, 1);
    CU_ASSERT(g.best == -1 && g.worst == -1);
    for (int i = 0; i < 4; i++) CU_ASSERT_EQUAL(g.advantage[i], 0.0f);
    // a non-finite score (a diverged model) is invalid rather than NaN for the whole group
    plain_group(c, sc, (const float[]){1, NAN, 3, INFINITY}, 4);
    f.drop_truncated = 0;
    gem_rank_group(&f, &s, c, sc, 4, &g);
    CU_ASSERT(g.valid[0] && !g.valid[1] && g.valid[2] && !g.valid[3]);
    ASSERT_CLOSE(g.advantage[2], 1.0, 1e-6);
    group_ranking_free(&g);
}

// Random groups under every mapping, normalisation and trim: the advantages of a group that is not
// skipped sum to zero to float rounding, invalid candidates carry nothing, the ranks are 0..n-1.
static void test_advantages_sum_to_zero(void) {
    enum { KMAX = 9 };
    for (uint64_t seed = 1; seed <= 2000; seed++) {
        Rng r;
        rng_seed(&r, seed);
        const int k = 2 + (int)(rng_u64(&r) % (KMAX - 1));
        Candidate c[KMAX];
        CandidateScore sc[KMAX];
        const float offset = 20.0f * rng_normal(&r);
        for (int i = 0; i < k; i++) {
            c[i] = (Candidate){.n = (int)(rng_u64(&r) % 4),
                               .finish = rng_u64(&r) % 3 ? FINISH_EOS : FINISH_LENGTH};
            sc[i] = (CandidateScore){.score = offset + 3.0f * rng_normal(&r)};
            sc[i].value = sc[i].score;
        }
        FilterConfig f = filter_cfg();
        f.drop_truncated = (int)(seed % 2);
        f.trim_bottom = (float)(seed % 3) * 0.25f;
        SegaConfig s = sega_cfg();
        s.reward_mapping = (seed / 2) % 2 ? REWARD_SOFTMAX : REWARD_IDENTITY;
        s.reward_temperature = 0.5f + rng_uniform(&r);
        s.adv_norm = (seed / 4) % 2 ? ADV_STD : ADV_NONE;
        GroupRanking g;
        group_ranking_alloc(&g, k);
        gem_rank_group(&f, &s, c, sc, k, &g);
        double sum = 0.0, abs_sum = 0.0, reward_sum = 0.0;
        int seen[KMAX] = {0}, nv = 0;
        for (int i = 0; i < k; i++) {
            sum += g.advantage[i];
            abs_sum += fabs(g.advantage[i]);
            if (!g.valid[i]) {
                CU_ASSERT(g.advantage[i] == 0.0f && g.rank[i] == -1);
                continue;
            }
            nv++;
            reward_sum += g.reward[i];
            CU_ASSERT_FATAL(g.rank[i] >= 0 && g.rank[i] < g.n_valid);
            seen[g.rank[i]]++;
        }
        CU_ASSERT_EQUAL(nv, g.n_valid);
        for (int j = 0; j < nv; j++) CU_ASSERT_EQUAL(seen[j], 1);
        if (s.reward_mapping == REWARD_SOFTMAX && nv > 0) ASSERT_CLOSE(reward_sum, 1.0, 1e-5);
        if (g.skipped) {
            CU_ASSERT_EQUAL(abs_sum, 0.0);
            CU_ASSERT(g.best == -1 && g.worst == -1);
        } else {
            CU_ASSERT(nv >= 2);
            CU_ASSERT(fabs(sum) <= 0x1p-22 * abs_sum + 1e-12);
            CU_ASSERT(g.rank[g.best] == 0 && g.rank[g.worst] == nv - 1);
        }
        group_ranking_free(&g);
    }
}

// ---- SEGA loss ---------------------------------------------------------------------------------

static double sega_value(const SegaConfig *s, float A, float w, const float *l, const float *old,
                         const float *ref, int n) {
    float g[16];
    return sega_candidate_loss(s, A, w, l, old, ref, n, g);
}

// Compares dL/dl_t with central differences of the value, each l_t moved by h = 2^-10 (exact in
// float for these l).
static void check_sega_grad(const SegaConfig *s, float A, float w, const float *l, const float *old,
                            const float *ref, int n) {
    const float h = 0x1p-10f;
    float g[16], lp[16];
    sega_candidate_loss(s, A, w, l, old, ref, n, g);
    for (int t = 0; t < n; t++) {
        memcpy(lp, l, sizeof(float) * (size_t)n);
        lp[t] = l[t] + h;
        const double up = sega_value(s, A, w, lp, old, ref, n);
        lp[t] = l[t] - h;
        const double down = sega_value(s, A, w, lp, old, ref, n);
        const double fd = (up - down) / (2.0 * (double)h);
        if (fabs(fd - g[t]) > 1e-6 + 1e-4 * fabs(fd))
            fprintf(stderr, "\n  token %d: dL/dl %.9g, finite difference %.9g\n", t, g[t], fd);
        CU_ASSERT(fabs(fd - g[t]) <= 1e-6 + 1e-4 * fabs(fd));
    }
}

enum { NT = 5 };
static const float L[NT] = {-1.25f, -0.5f, -2.0f, -0.75f, -3.5f};
// l - old = 0.05, 0.5, -0.6, -0.1, 0.25: rho = 1.05 and 0.90 inside [0.8, 1.2], 1.65 and 1.28
// above it, 0.55 below it; each log-ratio at least 0.07 from the kinks at ln 0.8 and ln 1.2
static const float OLD[NT] = {-1.3f, -1.0f, -1.4f, -0.65f, -3.75f};
static const float REF[NT] = {-1.0f, -0.75f, -2.5f, -0.5f, -3.0f};

static void test_sega_on_policy(void) {
    SegaConfig s = sega_cfg();
    // hand value: -w A sum(l) = -0.25 * 0.5 * (-6) = 0.75, dL/dl_t = -w A = -0.125
    const float l3[3] = {-1, -2, -3};
    float g[3];
    ASSERT_CLOSE(sega_candidate_loss(&s, 0.5f, 0.25f, l3, NULL, NULL, 3, g), 0.75, 1e-12);
    for (int t = 0; t < 3; t++) ASSERT_CLOSE(g[t], -0.125, 1e-9);
    s.logp_agg = LOGP_MEAN; // divided by n = 3
    ASSERT_CLOSE(sega_candidate_loss(&s, 0.5f, 0.25f, l3, NULL, NULL, 3, g), 0.25, 1e-12);
    for (int t = 0; t < 3; t++) ASSERT_CLOSE(g[t], -0.125 / 3, 1e-8);
    for (int agg = 0; agg < 2; agg++) {
        s.logp_agg = agg ? LOGP_MEAN : LOGP_SUM;
        check_sega_grad(&s, 0.7f, 0.125f, L, NULL, NULL, NT);
        check_sega_grad(&s, -0.4f, 0.5f, L, NULL, NULL, NT);
    }
    // ratio 1 (the generator's weights are the learner's): the same gradient as on-policy
    s = sega_cfg();
    float g_on[NT], g_rho1[NT];
    sega_candidate_loss(&s, 0.7f, 0.125f, L, NULL, NULL, NT, g_on);
    sega_candidate_loss(&s, 0.7f, 0.125f, L, L, NULL, NT, g_rho1);
    for (int t = 0; t < NT; t++) ASSERT_CLOSE(g_on[t], g_rho1[t], 1e-7);
}

static void test_sega_off_policy_clipped(void) {
    SegaConfig s = sega_cfg();
    for (int agg = 0; agg < 2; agg++) {
        s.logp_agg = agg ? LOGP_MEAN : LOGP_SUM;
        check_sega_grad(&s, 0.7f, 0.125f, L, OLD, NULL, NT);
        check_sega_grad(&s, -0.4f, 0.5f, L, OLD, NULL, NT);
    }
    // which tokens are clipped: A > 0 stops above 1 + eps, A < 0 below 1 - eps
    s.logp_agg = LOGP_SUM;
    float g[NT];
    sega_candidate_loss(&s, 0.7f, 1.0f, L, OLD, NULL, NT, g);
    CU_ASSERT(g[0] != 0 && g[1] == 0 && g[2] != 0 && g[3] != 0 && g[4] == 0);
    sega_candidate_loss(&s, -0.4f, 1.0f, L, OLD, NULL, NT, g);
    CU_ASSERT(g[0] != 0 && g[1] != 0 && g[2] == 0 && g[3] != 0 && g[4] != 0);
    // one token by hand, rho = e^0.5 = 1.6487213: with A = 0.5, min(0.824, 1.2 * 0.5) = 0.6, so
    // L = -0.6 and no gradient; with A = -0.5, min(-0.824, -0.6) = -0.824: L = 0.8243606,
    // dL/dl = -rho A = 0.8243606
    const float l1 = 0.0f, o1 = -0.5f;
    float g1;
    ASSERT_CLOSE(sega_candidate_loss(&s, 0.5f, 1.0f, &l1, &o1, NULL, 1, &g1), -0.6, 1e-7);
    CU_ASSERT_EQUAL(g1, 0.0f);
    ASSERT_CLOSE(sega_candidate_loss(&s, -0.5f, 1.0f, &l1, &o1, NULL, 1, &g1), 0.82436064, 1e-7);
    ASSERT_CLOSE(g1, 0.82436064, 1e-6);
}

static void test_sega_off_policy_unclipped(void) {
    SegaConfig s = sega_cfg();
    s.clip_eps = 0.0f; // plain importance weights: every token's gradient flows
    for (int agg = 0; agg < 2; agg++) {
        s.logp_agg = agg ? LOGP_MEAN : LOGP_SUM;
        check_sega_grad(&s, 0.7f, 0.125f, L, OLD, NULL, NT);
        check_sega_grad(&s, -0.4f, 0.5f, L, OLD, NULL, NT);
    }
    // L = -w A rho for one token: -1 * 0.5 * e^0.5
    const float l1 = 0.0f, o1 = -0.5f;
    float g1;
    ASSERT_CLOSE(sega_candidate_loss(&s, 0.5f, 1.0f, &l1, &o1, NULL, 1, &g1), -0.82436064, 1e-7);
    ASSERT_CLOSE(g1, -0.82436064, 1e-6);
}

static void test_sega_kl(void) {
    SegaConfig s = sega_cfg();
    s.kl_coef = 0.1f;
    // one token, A = 0, d = ref - l = 1: kl = e - 1 - 1 = 0.7182818, L = 0.1 * kl,
    // dL/dl = 0.1 * (1 - e) = -0.1718282
    const float l1 = -2.0f, r1 = -1.0f;
    float g1;
    ASSERT_CLOSE(sega_candidate_loss(&s, 0.0f, 1.0f, &l1, NULL, &r1, 1, &g1), 0.07182818, 1e-8);
    ASSERT_CLOSE(g1, -0.17182818, 1e-7);
    // at the reference, the penalty and its gradient vanish
    ASSERT_CLOSE(sega_candidate_loss(&s, 0.0f, 1.0f, &r1, NULL, &r1, 1, &g1), 0.0, 1e-12);
    CU_ASSERT_EQUAL(g1, 0.0f);
    // without a reference, or with kl_coef 0, no penalty
    ASSERT_CLOSE(sega_candidate_loss(&s, 0.0f, 1.0f, &l1, NULL, NULL, 1, &g1), 0.0, 1e-12);
    for (int agg = 0; agg < 2; agg++) {
        s.logp_agg = agg ? LOGP_MEAN : LOGP_SUM;
        for (int clip = 0; clip < 2; clip++) {
            s.clip_eps = clip ? 0.2f : 0.0f;
            check_sega_grad(&s, 0.7f, 0.125f, L, NULL, REF, NT);
            check_sega_grad(&s, 0.7f, 0.125f, L, OLD, REF, NT);
            check_sega_grad(&s, -0.4f, 0.5f, L, OLD, REF, NT);
        }
    }
}

// ---- DPO ---------------------------------------------------------------------------------------

// beta 0.1, lc = -10, lr = -14, lc_ref = -12, lr_ref = -13: margin = (-10 + 12) - (-14 + 13) = 3,
// x = 0.3; loss = ln(1 + e^-0.3) = ln(1.7408182) = 0.5543552;
// sigmoid(-0.3) = 1 / (1 + e^0.3) = 0.4255575, so dL/dlc = -0.0425557 and dL/dlr = +0.0425557.
static void test_dpo_hand_value(void) {
    double dlc, dlr;
    const double v = dpo_pair_loss(0.1f, -10, -14, -12, -13, &dlc, &dlr);
    ASSERT_CLOSE(v, 0.5543552444685271, 1e-7); // beta is a float: 0.1f, hence 1e-7
    ASSERT_CLOSE(dlc, -0.0425557483188341, 1e-8);
    ASSERT_CLOSE(dlr, 0.0425557483188341, 1e-8);
    // a zero margin: ln 2, gradients -+ beta / 2
    ASSERT_CLOSE(dpo_pair_loss(0.5f, -3, -3, -5, -5, &dlc, &dlr), log(2.0), 1e-12);
    ASSERT_CLOSE(dlc, -0.25, 1e-12);
    ASSERT_CLOSE(dlr, 0.25, 1e-12);
    // far margins stay finite: ~0 and ~-x
    CU_ASSERT(dpo_pair_loss(1.0f, 0, -5000, 0, 0, &dlc, &dlr) < 1e-300);
    CU_ASSERT_EQUAL(dlc, -0.0);
    ASSERT_CLOSE(dpo_pair_loss(1.0f, -5000, 0, 0, 0, &dlc, &dlr), 5000.0, 1e-9);
    ASSERT_CLOSE(dlc, -1.0, 1e-12);
    ASSERT_CLOSE(dlr, 1.0, 1e-12);
}

static void test_dpo_grad(void) {
    const double h = 1e-5;
    const double lc = -20.5, lr = -18.25, lc_ref = -21.0, lr_ref = -17.0;
    const float betas[3] = {0.1f, 0.5f, 2.0f};
    for (int b = 0; b < 3; b++) {
        double dlc, dlr;
        dpo_pair_loss(betas[b], lc, lr, lc_ref, lr_ref, &dlc, &dlr);
        const double fc = (dpo_pair_loss(betas[b], lc + h, lr, lc_ref, lr_ref, NULL, NULL) -
                           dpo_pair_loss(betas[b], lc - h, lr, lc_ref, lr_ref, NULL, NULL)) /
                          (2 * h);
        const double fr = (dpo_pair_loss(betas[b], lc, lr + h, lc_ref, lr_ref, NULL, NULL) -
                           dpo_pair_loss(betas[b], lc, lr - h, lc_ref, lr_ref, NULL, NULL)) /
                          (2 * h);
        ASSERT_CLOSE(dlc, fc, 1e-7);
        ASSERT_CLOSE(dlr, fr, 1e-7);
        CU_ASSERT(dlc < 0 && dlr > 0);
    }
}

// ---- evaluation --------------------------------------------------------------------------------

static int extracted_is(const char *text, const char *want) {
    char *got = gem_extract_answer(text, strlen(text), "Final Answer:");
    const int ok = got && strcmp(got, want) == 0;
    if (!ok) fprintf(stderr, "\n  extracted [%s], wanted [%s]\n", got ? got : "(null)", want);
    free(got);
    return ok;
}

static int text_matches(const char *text, const char *expected) {
    char *got = gem_extract_answer(text, strlen(text), "Final Answer:");
    const int m = gem_answer_matches(got, expected);
    free(got);
    return m;
}

static void test_extract_answer(void) {
    CU_ASSERT(extracted_is("Final Answer: 12", "12"));
    CU_ASSERT(extracted_is("3 * 4 = 12.\nFinal Answer: 12.0", "12.0"));
    CU_ASSERT(extracted_is("Final Answer:   42   \nI hope this helps.", "42"));
    CU_ASSERT(extracted_is("Final Answer: 5\r\nmore", "5"));
    CU_ASSERT(extracted_is("Final Answer: 1\nwait, no.\nFinal Answer: 2", "2"));
    CU_ASSERT(extracted_is("Final Answer:", ""));
    CU_ASSERT(extracted_is("the sum is Final Answer: -7 apples", "-7 apples"));
    CU_ASSERT_PTR_NULL(gem_extract_answer("The answer is 12", 16, "Final Answer:"));
    CU_ASSERT_PTR_NULL(gem_extract_answer("Final Answer", 12, "Final Answer:"));
    // only len bytes are read: the marker past them is not seen
    CU_ASSERT_PTR_NULL(gem_extract_answer("ab Final Answer: 3", 5, "Final Answer:"));
}

static void test_answer_matches(void) {
    CU_ASSERT(text_matches("Final Answer: 12", "12"));
    CU_ASSERT(text_matches("so...\nFinal Answer: 12.0", "12"));
    CU_ASSERT(text_matches("Final Answer: 12.", "12"));
    CU_ASSERT(text_matches("Final Answer: 12.50.", "12.5"));
    CU_ASSERT(text_matches("Final Answer: 1,200", "1200"));
    CU_ASSERT(text_matches("Final Answer: 1,234,567.00", "1234567"));
    CU_ASSERT(text_matches("Final Answer: -5", "-5"));
    CU_ASSERT(text_matches("Final Answer: -0", "0"));
    CU_ASSERT(text_matches("Final Answer: +3", "3"));
    CU_ASSERT(text_matches("Final Answer: 007", "7"));
    CU_ASSERT(text_matches("Final Answer: 8\nBecause 3 + 5 = 8.", "8"));
    CU_ASSERT(text_matches("Final Answer: 1\nno.\nFinal Answer: 2", "2"));
    CU_ASSERT(!text_matches("Final Answer: 1\nno.\nFinal Answer: 2", "1"));
    CU_ASSERT(!text_matches("Final Answer: -5", "5"));
    CU_ASSERT(!text_matches("Final Answer: 12", "12.5"));
    CU_ASSERT(!text_matches("Final Answer: 120", "12"));
    CU_ASSERT(!text_matches("The answer is 12", "12"));  // missing marker
    CU_ASSERT(!text_matches("Final Answer: 1,2", "12")); // not a thousands grouping
    CU_ASSERT(!text_matches("Final Answer: 12 apples", "12"));
    CU_ASSERT(!text_matches("Final Answer:", "0"));
    // strings compare as strings, trimmed
    CU_ASSERT(text_matches("Final Answer: Paris", " Paris "));
    CU_ASSERT(!text_matches("Final Answer: Paris", "paris"));
    CU_ASSERT(gem_answer_matches("1,200", "1,200.0"));
    CU_ASSERT(!gem_answer_matches(NULL, "1"));
}

static void test_wilson_interval(void) {
    double lo, hi;
    wilson_interval(8, 10, &lo, &hi);
    ASSERT_CLOSE(lo, 0.4901625, 1e-6); // the textbook [0.490, 0.943]
    ASSERT_CLOSE(hi, 0.9433178, 1e-6);
    wilson_interval(0, 10, &lo, &hi);
    CU_ASSERT_EQUAL(lo, 0.0);
    ASSERT_CLOSE(hi, 0.2775328, 1e-6);
    wilson_interval(10, 10, &lo, &hi);
    ASSERT_CLOSE(lo, 0.7224672, 1e-6);
    ASSERT_CLOSE(hi, 1.0, 1e-12);
    wilson_interval(50, 100, &lo, &hi);
    ASSERT_CLOSE(lo, 0.4038315, 1e-6);
    ASSERT_CLOSE(hi, 0.5961685, 1e-6);
    wilson_interval(5.5, 10, &lo, &hi); // a tie counts half
    ASSERT_CLOSE(lo, 0.2736697, 1e-6);
    ASSERT_CLOSE(hi, 0.7985770, 1e-6);
    wilson_interval(0, 0, &lo, &hi);
    CU_ASSERT(lo == 0.0 && hi == 1.0);
}

// ---- one policy in the ratio and the gradient ----------------------------------------------

// Equal weights at temperature 0.7 and top-p 0.9 (the Qwen and Llama presets' kind of sampling):
// the learner's log-prob of every sampled token at the sampling temperature is the sampler's
// logp_old, so every ratio of the pipeline is 1 within 1e-6; and the pipeline's update (the
// off-policy term against logp_old) equals the single process's (the on-policy term).
static void ratio_at_sampling_temperature(float init, double bound) {
    enum { G = 3, K = 4, P = 5 };
    ModelConfig cfg;
    test_tiny_config(&cfg, MODEL_LLAMA);
    cfg.initializer_range = init;
    Model m;
    test_random_model(&m, &cfg, 77);
    GemConfig c;
    config_defaults(&c);
    c.sampling.k = K, c.sampling.temperature = 0.7f, c.sampling.top_p = 0.9f;
    c.sampling.max_new_tokens = 12;
    int prompt[G][P];
    const int *prompts[G];
    int lens[G];
    uint64_t keys[G];
    Rng r;
    rng_seed(&r, 5);
    for (int g = 0; g < G; g++) {
        for (int t = 0; t < P; t++) prompt[g][t] = 3 + (int)(rng_u64(&r) % 30);
        prompts[g] = prompt[g], lens[g] = P, keys[g] = (uint64_t)g;
    }
    GroupBatch gb = {.G = G, .k = K};
    gb.cands = callocCheck((size_t)G * K, sizeof(Candidate));
    gb.rank = callocCheck(G, sizeof(GroupRanking));
    GenerateRequest req = {.sc = &c.sampling, .seed = 9, .policy_version = 3};
    CU_ASSERT_FATAL(sampler_generate(&m, &req, G, prompts, lens, keys, gb.cands) == 0);
    for (int g = 0; g < G; g++) {
        group_ranking_alloc(&gb.rank[g], K);
        gb.rank[g].n_valid = K;
        for (int i = 0; i < K; i++)
            gb.rank[g].valid[i] = 1, gb.rank[g].advantage[i] = i == g % K ? 0.75f : -0.25f;
    }
    // the ratios: the learner's forward at T against logp_old, token by token
    SeqRef seqs[G * K];
    long tokens = 0;
    for (int i = 0; i < G * K; i++) {
        seqs[i] = (SeqRef){prompts[i / K], P, gb.cands[i].ids, gb.cands[i].n};
        tokens += gb.cands[i].n;
    }
    float *lp = mallocCheck(sizeof(float) * (size_t)tokens);
    m.logit_temperature = 0.7f;
    seq_forward_backward(&m, seqs, G * K, 1, 1 << 20, 1, lp, NULL, NULL);
    m.logit_temperature = 0;
    double worst = 0;
    for (int i = 0, o = 0; i < G * K; o += gb.cands[i].n, i++)
        for (int t = 0; t < gb.cands[i].n; t++)
            worst = fmax(worst, fabs(expf(lp[o + t] - gb.cands[i].logp_old[t]) - 1.0f));
    CU_ASSERT(worst <= bound);
    if (worst > bound) printf("\n  largest |ratio - 1| at equal weights: %g\n", worst);
    // the update: the same weights as the sampler (version 3, on-policy) and one version later
    // (the pipeline's ratio to logp_old)
    const size_t n = m.layout.total;
    float *on = mallocCheck(sizeof(float) * n);
    int ns;
    long nt;
    for (int pass = 0; pass < 2; pass++) {
        model_zero_grad(&m);
        sega_accumulate(&m, NULL, &c, &gb, prompts, lens, 1, 0, pass == 0 ? 3 : 4, &ns, &nt);
        CU_ASSERT(ns == G * K);
        if (pass == 0) {
            memcpy(on, m.grads, sizeof(float) * n);
            continue;
        }
        double big = 0, diff = 0;
        for (size_t i = 0; i < n; i++)
            big = fmax(big, fabs(on[i])), diff = fmax(diff, fabs(on[i] - m.grads[i]));
        CU_ASSERT(big > 0 && diff <= 1e-5 * big);
        if (!(diff <= 1e-5 * big)) printf("\n  update: largest difference %g of %g\n", diff, big);
    }
    CU_ASSERT(m.logit_temperature == 0); // sega_accumulate leaves the model as it found it
    for (int i = 0; i < G * K; i++) candidate_free(&gb.cands[i]);
    for (int g = 0; g < G; g++) group_ranking_free(&gb.rank[g]);
    free(gb.cands), free(gb.rank), free(lp), free(on);
    model_free(&m);
    config_free(&c);
}

// A model initialised as transformers does (0.02), and one with far larger logits (0.3, the grad
// checks' init, log-probs down to -4): the sampler's decode and the learner's packed forward sum
// in other orders, a few float ulps apart at such log-probs, so its bound is 4e-6.
static void test_ratio_at_sampling_temperature(void) {
    ratio_at_sampling_temperature(0.02f, 1e-6);
    ratio_at_sampling_temperature(0.3f, 4e-6);
}

void register_gem_tests(void) {
    static const TestCase tests[] = {
        {"ratio at T 0.7, top-p 0.9: 1 at equal weights; the pipeline's update",
         test_ratio_at_sampling_temperature},
        {"marker with straddling tokens", test_marker_straddling},
        {"marker twice: the last one", test_marker_last_occurrence},
        {"marker absent: fraction rule", test_marker_absent_falls_back},
        {"top_m as a fraction and a count", test_top_m_fraction_and_count},
        {"fraction rule", test_fraction_rule},
        {"window rule", test_window_rule},
        {"empty CoT and final spans", test_empty_spans},
        {"EOS excluded from the score", test_eos_excluded},
        {"entropy source", test_entropy_source},
        {"no padding in scores", test_no_padding_in_scores},
        {"no padding in the SEGA loss", test_no_padding_in_loss},
        {"ranking: identity rewards", test_rank_identity},
        {"ranking: softmax rewards", test_rank_softmax},
        {"ranking: adv_norm std", test_rank_adv_std},
        {"ranking: trim_bottom", test_rank_trim_bottom},
        {"ranking: validity and skipping", test_rank_validity},
        {"advantages sum to zero", test_advantages_sum_to_zero},
        {"SEGA on-policy gradient", test_sega_on_policy},
        {"SEGA off-policy clipped gradient", test_sega_off_policy_clipped},
        {"SEGA off-policy unclipped gradient", test_sega_off_policy_unclipped},
        {"SEGA KL gradient", test_sega_kl},
        {"DPO hand value", test_dpo_hand_value},
        {"DPO gradient", test_dpo_grad},
        {"extract answer", test_extract_answer},
        {"answer matching", test_answer_matches},
        {"Wilson interval", test_wilson_interval},
        {NULL, NULL},
    };
    add_suite("gem", tests);
}

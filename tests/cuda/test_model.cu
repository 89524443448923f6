// The whole model on the device against the CPU backend: log-probs and entropies, gradients, a
// short SEGA run (Eq. 2 losses step by step), the KV-cache sampler, and the host copies.
//
// The CPU model gets the GPU's weights rounded to bf16, so what differs is only the rounding
// of activations (bf16 GEMM inputs) and the order of fp32 sums.
#include <cmath>
#include <cstring>

#include "cuda_tests.h"

extern "C" {
#include "gem/gem.h"
#include "model/gpu.h"
#include "base/rng.h"
#include "model/sampler.h"
}

// Log-probs and entropies of a model agree to about 1e-2 of their scale; gradients to a few
// 1e-2 of the largest gradient of each tensor, bf16 activations on both passes compounding
// (under the emulator: at most 1.2e-2 on the D=16 model, 6.3e-2 on the 16-wide tiny ones).
static const double TOL_LOGP = 3e-2, TOL_GRAD = 8e-2;

// The families of test_tiny_config (head_dim 4: the attention's fallback kernel) and a
// qwen2-like one with head_dim 16 (the tensor-core kernels).
static ModelConfig family(int i) {
    ModelConfig c;
    if (i < 3) {
        test_tiny_config(&c, (ModelType)i);
        return c;
    }
    test_tiny_config(&c, MODEL_QWEN2);
    c.vocab_size = 301, c.hidden_size = 64, c.intermediate_size = 96;
    c.num_heads = 4, c.num_kv_heads = 2, c.head_dim = 16, c.max_position_embeddings = 128;
    c.initializer_range = 0.1f;
    return c;
}
static const int N_FAMILIES = 4;
static const char *family_name(int i) {
    static const char *n[] = {"llama", "qwen2", "mistral", "qwen2 D=16"};
    return n[i];
}

// A random model with bf16-representable weights, and its copy on the device.
static void model_pair(Model *cpu, Model *gpu, const ModelConfig *cfg, uint64_t seed) {
    test_random_model(cpu, cfg, seed);
    for (size_t i = 0; i < cpu->layout.total; i++)
        cpu->params[i] = __bfloat162float(__float2bfloat16(cpu->params[i]));
    model_init(gpu, cfg);
    std::memcpy(gpu->params, cpu->params, cpu->layout.total * sizeof(float));
    CU_ASSERT_FATAL(model_to_gpu(gpu, 0) == 0);
}

// Three sequences of random tokens, packed; lengths chosen to be ragged.
struct Batch {
    std::vector<int> tokens, offsets;
    PackedBatch pb;
};
static void make_batch(Batch *b, int V, uint64_t seed, int big) {
    const int lens_small[] = {5, 9, 14}, lens_big[] = {33, 70, 17};
    const int *lens = big ? lens_big : lens_small;
    Rng r;
    rng_seed(&r, seed);
    b->offsets.assign(1, 0);
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < lens[s]; i++) b->tokens.push_back((int)(rng_u64(&r) % (uint64_t)V));
        b->offsets.push_back((int)b->tokens.size());
    }
    b->pb = {3, (int)b->tokens.size(), b->tokens.data(), b->offsets.data(), nullptr};
}

static void test_logprobs_entropies(void) {
    for (int f = 0; f < N_FAMILIES; f++) {
        const ModelConfig cfg = family(f);
        Model cpu, gpu;
        model_pair(&cpu, &gpu, &cfg, 100 + f);
        Batch b;
        make_batch(&b, cfg.vocab_size, 7 + f, f == 3 && CUDA_TEST_BIG);
        const int N = b.pb.N;
        std::vector<float> lp(N), ent(N), lp_g(N), ent_g(N);
        model_forward(&cpu, &b.pb, lp.data(), ent.data());
        model_forward(&gpu, &b.pb, lp_g.data(), ent_g.data());
        char what[96];
        std::snprintf(what, sizeof what, "%s log-probs", family_name(f));
        CHECK_REL(what, lp_g, lp, TOL_LOGP);
        std::snprintf(what, sizeof what, "%s entropies", family_name(f));
        CHECK_REL(what, ent_g, ent, TOL_LOGP);
        // a sequence's last position has no target: exactly 0, as on the CPU
        for (int s = 1; s <= 3; s++) CU_ASSERT(lp_g[b.offsets[s] - 1] == 0.0f);
        model_free(&cpu);
        model_free(&gpu);
    }
}

static void test_gradients(void) {
    for (int f = 0; f < N_FAMILIES; f++) {
        const ModelConfig cfg = family(f);
        Model cpu, gpu;
        model_pair(&cpu, &gpu, &cfg, 200 + f);
        Batch b;
        make_batch(&b, cfg.vocab_size, 17 + f, 0);
        const int N = b.pb.N;
        std::vector<float> dlp = rand_vec(N, 300 + f), lp(N);
        model_forward(&cpu, &b.pb, lp.data(), NULL);
        model_zero_grad(&cpu);
        model_backward(&cpu, &b.pb, dlp.data());
        model_forward(&gpu, &b.pb, lp.data(), NULL);
        model_zero_grad(&gpu);
        model_backward(&gpu, &b.pb, dlp.data());
        const size_t total = cpu.layout.total;
        std::vector<float> g(total);
        gpu_model_grads_download(gpu.gpu, g.data());
        for (int k = 0; k < NUM_PARAM_KINDS; k++) {
            const ParamSpec *s = &cpu.layout.p[k];
            if (!s->size) continue;
            std::vector<float> want(cpu.grads + s->offset, cpu.grads + s->offset + s->size);
            std::vector<float> got(g.begin() + s->offset, g.begin() + s->offset + s->size);
            char what[96];
            std::snprintf(what, sizeof what, "%s d%s", family_name(f),
                          param_kind_name((ParamKind)k));
            CHECK_REL(what, got, want, TOL_GRAD);
        }
        model_free(&cpu);
        model_free(&gpu);
    }
}

// A prompt shared by three responses (PackedBatch.prefix) on the device: against the CPU on the
// same shared batch (which the CPU tests hold to the whole packing, bit for bit in its log-probs),
// and against the device's own whole packing of the same sequences: log-probs and entropies of
// the responses, and every gradient.
static void test_shared_prefix(void) {
    for (int f = 0; f < N_FAMILIES; f++) {
        const ModelConfig cfg = family(f);
        Model cpu, gpu;
        model_pair(&cpu, &gpu, &cfg, 400 + f);
        Rng r;
        rng_seed(&r, 500 + f);
        const int P = 6, R[3] = {3, 1, 5}, V = cfg.vocab_size; // small: the emulator is slow
        std::vector<int> prompt(P), other(3);
        for (int &t : prompt) t = (int)(rng_u64(&r) % (uint64_t)V);
        for (int &t : other) t = (int)(rng_u64(&r) % (uint64_t)V);
        // shared: other | prompt[0, P-1) | prompt[P-1] resp_c (c < 3), prefix 1; whole: other |
        // prompt resp_c; at[v][c]: where response c's first token is predicted
        std::vector<int> tok[2], off[2], at[2];
        std::vector<int> pre = {-1, -1, 1, 1, 1};
        for (int v = 0; v < 2; v++) {
            tok[v] = other;
            off[v] = {0, (int)other.size()};
            if (v == 0) {
                tok[v].insert(tok[v].end(), prompt.begin(), prompt.end() - 1);
                off[v].push_back((int)tok[v].size());
            }
        }
        Rng rr;
        rng_seed(&rr, 600 + f);
        for (int c = 0; c < 3; c++) {
            std::vector<int> resp(R[c]);
            for (int &t : resp) t = (int)(rng_u64(&rr) % (uint64_t)V);
            for (int v = 0; v < 2; v++) {
                const int lead = v == 0 ? 1 : P;
                tok[v].insert(tok[v].end(), prompt.end() - lead, prompt.end());
                at[v].push_back((int)tok[v].size() - 1);
                tok[v].insert(tok[v].end(), resp.begin(), resp.end());
                off[v].push_back((int)tok[v].size());
            }
        }
        PackedBatch shared = {5, (int)tok[0].size(), tok[0].data(), off[0].data(), pre.data()};
        PackedBatch whole = {4, (int)tok[1].size(), tok[1].data(), off[1].data(), nullptr};
        const PackedBatch *pb[3] = {&shared, &shared, &whole};
        Model *m[3] = {&cpu, &gpu, &gpu};
        std::vector<float> lp[3], ent[3], g[3];
        const size_t total = cpu.layout.total;
        for (int v = 0; v < 3; v++) {
            const int N = pb[v]->N;
            std::vector<float> all_lp(N), all_ent(N), dlp(N, 0.0f);
            model_forward(m[v], pb[v], all_lp.data(), all_ent.data());
            const std::vector<int> &where = v == 2 ? at[1] : at[0];
            for (int c = 0; c < 3; c++)
                for (int j = 0; j < R[c]; j++) {
                    lp[v].push_back(all_lp[where[c] + j]);
                    ent[v].push_back(all_ent[where[c] + j]);
                    dlp[where[c] + j] = 0.5f - 0.1f * (float)((c * 7 + j) % 11);
                }
            model_zero_grad(m[v]);
            model_backward(m[v], pb[v], dlp.data());
            g[v].resize(total);
            if (v == 0)
                std::memcpy(g[v].data(), cpu.grads, total * sizeof(float));
            else
                gpu_model_grads_download(gpu.gpu, g[v].data());
        }
        char what[96];
        for (int v = 1; v < 3; v++) {
            const char *vs = v == 1 ? "shared vs the CPU" : "shared vs whole on the device";
            std::snprintf(what, sizeof what, "%s %s: log-probs", family_name(f), vs);
            CHECK_REL(what, lp[1], lp[v == 1 ? 0 : 2], TOL_LOGP);
            std::snprintf(what, sizeof what, "%s %s: entropies", family_name(f), vs);
            CHECK_REL(what, ent[1], ent[v == 1 ? 0 : 2], TOL_LOGP);
            for (int k = 0; k < NUM_PARAM_KINDS; k++) {
                const ParamSpec *s = &cpu.layout.p[k];
                if (!s->size) continue;
                const std::vector<float> &ref = g[v == 1 ? 0 : 2];
                std::vector<float> want(ref.begin() + s->offset, ref.begin() + s->offset + s->size);
                std::vector<float> got(g[1].begin() + s->offset,
                                       g[1].begin() + s->offset + s->size);
                std::snprintf(what, sizeof what, "%s %s: d%s", family_name(f), vs,
                              param_kind_name((ParamKind)k));
                CHECK_REL(what, got, want, TOL_GRAD);
            }
        }
        model_free(&cpu);
        model_free(&gpu);
    }
}

// Four SEGA steps (Eq. 2 on the three sequences as one group, then clip and AdamW) on each
// backend from the same weights: the losses and gradient norms step by step.
static void sega_run(Model *m, const Batch *b, std::vector<double> *losses,
                     std::vector<double> *norms) {
    SegaConfig s;
    std::memset(&s, 0, sizeof s);
    s.logp_agg = LOGP_SUM;
    s.clip_eps = 0.2f;
    const float adv[3] = {1.0f, -0.5f, -0.5f};
    const int N = b->pb.N;
    std::vector<float> lp(N), dlp(N);
    AdamWConfig opt = {1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f};
    for (int step = 0; step < 4; step++) {
        model_forward(m, &b->pb, lp.data(), NULL);
        double loss = 0.0;
        std::fill(dlp.begin(), dlp.end(), 0.0f);
        for (int c = 0; c < 3; c++) {
            const int o = b->offsets[c], n = b->offsets[c + 1] - o - 1;
            loss += sega_candidate_loss(&s, adv[c], 1.0f / 3.0f, lp.data() + o, NULL, NULL, n,
                                        dlp.data() + o);
        }
        model_zero_grad(m);
        model_backward(m, &b->pb, dlp.data());
        norms->push_back(model_clip_grad_norm(m, 1.0f));
        model_adamw_step(m, &opt);
        losses->push_back(loss);
    }
}

static void test_sega_run(void) {
    for (int f = 0; f < N_FAMILIES; f++) {
        const ModelConfig cfg = family(f);
        Model cpu, gpu;
        model_pair(&cpu, &gpu, &cfg, 400 + f);
        const std::vector<float> start(cpu.params, cpu.params + cpu.layout.total);
        Batch b;
        make_batch(&b, cfg.vocab_size, 27 + f, 0);
        std::vector<double> lc, lg, nc, ng;
        sega_run(&cpu, &b, &lc, &nc);
        sega_run(&gpu, &b, &lg, &ng);
        for (size_t i = 0; i < lc.size(); i++) {
            const double scale = std::fmax(std::fabs(lc[i]), 1.0);
            if (getenv("GEMC_TEST_VERBOSE") || !(std::fabs(lg[i] - lc[i]) <= TOL_LOGP * scale) ||
                !(std::fabs(ng[i] - nc[i]) <= TOL_GRAD * nc[i]))
                std::printf("\n    %s step %zu: loss %.6g vs CPU %.6g, grad norm %.6g vs %.6g\n",
                            family_name(f), i + 1, lg[i], lc[i], ng[i], nc[i]);
            CU_ASSERT(std::fabs(lg[i] - lc[i]) <= TOL_LOGP * scale);
            CU_ASSERT(std::fabs(ng[i] - nc[i]) <= TOL_GRAD * nc[i]);
        }
        // the weights moved the same way: AdamW's update is about lr times the sign of the
        // gradient, so where a gradient is near 0 either backend may step either way; over the
        // whole slab the updates agree
        model_sync_host(&gpu);
        double diff = 0.0, size = 0.0;
        for (size_t i = 0; i < cpu.layout.total; i++) {
            diff += std::fabs((double)gpu.params[i] - cpu.params[i]);
            size += std::fabs((double)cpu.params[i] - start[i]);
        }
        if (getenv("GEMC_TEST_VERBOSE") || !(diff <= 0.1 * size))
            std::printf("\n    %s: the updates differ by %.3g of their size\n", family_name(f),
                        diff / size);
        CU_ASSERT(diff <= 0.1 * size);
        CU_ASSERT(gpu.adam_t == 4);
        model_free(&cpu);
        model_free(&gpu);
    }
}

// Candidates sampled on the device, then replayed through the CPU model (teacher forcing over
// prompt + candidate): every token's raw log-prob and entropy must be the CPU's, which checks
// the KV cache, its sharing among the k candidates and the positions; the self-certainty of
// every draw that follows the CPU's tokens must be the CPU sampler's. Draws use the same
// uniforms as the CPU sampler: most tokens are the CPU's own choice.
static void test_sampler(void) {
    for (int f = 0; f < N_FAMILIES; f++) {
        const ModelConfig cfg = family(f);
        Model cpu, gpu;
        model_pair(&cpu, &gpu, &cfg, 500 + f);
        SamplingConfig sc = {3, 1.0f, 1.0f, 0, 12};
        const int eos = cfg.eos_token_ids[0];
        GenerateRequest req;
        std::memset(&req, 0, sizeof req);
        req.sc = &sc, req.eos_ids = &eos, req.n_eos = 1, req.seed = 9, req.policy_version = 3;
        const int p0[] = {1, 5, 6, 7, 8, 9, 10}, p1[] = {1, 11, 12};
        const int *prompts[] = {p0, p1};
        const int lens[] = {7, 3};
        const uint64_t keys[] = {4, 5};
        Candidate cg[6], cc[6];
        CU_ASSERT_FATAL(sampler_generate(&gpu, &req, 2, prompts, lens, keys, cg) == 0);
        CU_ASSERT_FATAL(sampler_generate(&cpu, &req, 2, prompts, lens, keys, cc) == 0);
        int same = 0, all = 0;
        for (int i = 0; i < 6; i++) {
            const Candidate *c = &cg[i];
            CU_ASSERT(c->policy_version == 3);
            CU_ASSERT(c->n >= 1 && c->n <= sc.max_new_tokens);
            // replay: prompt + candidate through the CPU model
            const int b = i / sc.k;
            std::vector<int> seq(prompts[b], prompts[b] + lens[b]);
            seq.insert(seq.end(), c->ids, c->ids + c->n);
            std::vector<int> off = {0, (int)seq.size()};
            PackedBatch pb = {1, (int)seq.size(), seq.data(), off.data(), nullptr};
            std::vector<float> lp(seq.size()), ent(seq.size());
            model_forward(&cpu, &pb, lp.data(), ent.data());
            std::vector<float> want_lp, want_ent, got_lp, got_ent;
            for (int t = 0; t < c->n; t++) {
                want_lp.push_back(lp[lens[b] - 1 + t]), got_lp.push_back(c->logp_raw[t]);
                want_ent.push_back(ent[lens[b] - 1 + t]), got_ent.push_back(c->entropy_raw[t]);
                // at temperature 1 with no truncation the sampling distribution is the raw one
                CU_ASSERT(std::fabs(c->logp_sample[t] - c->logp_raw[t]) <= 1e-5f);
            }
            char what[96];
            std::snprintf(what, sizeof what, "%s candidate %d raw log-probs", family_name(f), i);
            CHECK_REL(what, got_lp, want_lp, TOL_LOGP);
            std::snprintf(what, sizeof what, "%s candidate %d entropies", family_name(f), i);
            CHECK_REL(what, got_ent, want_ent, TOL_LOGP);
            // Draw t reads the logits after the same tokens on both while the streams agree: the
            // CPU sampler's self-certainty, up to the device model's rounding of the logits, which
            // moves it by sum (p_i - 1/V) dz_i as it moves the entropy. Hence the entropies'
            // tolerance in nats, TOL_LOGP ln V (an entropy is at most ln V; these certainties are
            // 0.4 to 1 and differ by up to 0.035, as the entropies do); the sampler's own numbers
            // are checked to 1e-5 in test_head.cu.
            const double tol_cert = TOL_LOGP * std::log((double)cfg.vocab_size);
            for (int t = 0; t < c->n && t < cc[i].n; t++) {
                const double dc = std::fabs((double)c->certainty[t] - cc[i].certainty[t]);
                if (!(dc <= tol_cert) || !(c->certainty[t] >= 0.0f)) // (NaN fails)
                    std::printf("\n    %s candidate %d token %d: self-certainty %.7g, CPU %.7g",
                                family_name(f), i, t, c->certainty[t], cc[i].certainty[t]);
                CU_ASSERT(dc <= tol_cert && c->certainty[t] >= 0.0f);
                all++;
                if (c->ids[t] != cc[i].ids[t]) break; // the streams diverge after a different draw
                same++;
            }
        }
        // the first draws of every candidate come from identical uniforms: nearly all agree
        if (!(same * 10 >= all * 8))
            std::printf("\n    %s: %d of %d tokens drawn as the CPU drew them\n", family_name(f),
                        same, all);
        CU_ASSERT(same * 10 >= all * 8);
        for (int i = 0; i < 6; i++) candidate_free(&cg[i]), candidate_free(&cc[i]);
        model_free(&cpu);
        model_free(&gpu);
    }
}

// Greedy decoding draws the argmax: the same candidates as the CPU where no two logits are
// within rounding, which a peaked model makes the common case.
static void test_greedy(void) {
    const ModelConfig cfg = family(3);
    Model cpu, gpu;
    model_pair(&cpu, &gpu, &cfg, 600);
    SamplingConfig sc = {2, 0.0f, 1.0f, 0, 10};
    GenerateRequest req;
    std::memset(&req, 0, sizeof req);
    req.sc = &sc, req.seed = 1;
    const int p0[] = {3, 4, 5, 6}, p1[] = {7, 8, 9, 10, 11, 12};
    const int *prompts[] = {p0, p1};
    const int lens[] = {4, 6};
    const uint64_t keys[] = {0, 1};
    Candidate cg[4], cc[4];
    CU_ASSERT_FATAL(sampler_generate(&gpu, &req, 2, prompts, lens, keys, cg) == 0);
    CU_ASSERT_FATAL(sampler_generate(&cpu, &req, 2, prompts, lens, keys, cc) == 0);
    int same = 0;
    for (int i = 0; i < 4; i++) {
        CU_ASSERT(cg[i].n == 10 && cg[i].finish == FINISH_LENGTH); // no EOS asked for
        same += cg[i].n == cc[i].n && !std::memcmp(cg[i].ids, cc[i].ids, cg[i].n * sizeof(int));
        // greedy: both candidates of a prompt are the same
        if (i % 2) CU_ASSERT(!std::memcmp(cg[i].ids, cg[i - 1].ids, cg[i].n * sizeof(int)));
        for (int t = 0; t < cg[i].n; t++) CU_ASSERT(cg[i].logp_sample[t] == 0.0f);
    }
    CU_ASSERT(same >= 3);
    for (int i = 0; i < 4; i++) candidate_free(&cg[i]), candidate_free(&cc[i]);
    model_free(&cpu);
    model_free(&gpu);
}

// The host copies: what model_sync_host brings back is what the device holds, and weights the
// host writes (a received broadcast) reach the device's forward.
static void test_host_copies(void) {
    const ModelConfig cfg = family(1);
    Model cpu, gpu;
    model_pair(&cpu, &gpu, &cfg, 700);
    std::vector<float> before(gpu.params, gpu.params + gpu.layout.total);
    std::memset(gpu.params, 0, gpu.layout.total * sizeof(float));
    model_sync_host(&gpu);
    CU_ASSERT(!std::memcmp(before.data(), gpu.params, before.size() * sizeof(float)));
    // moments are zeros before the first step
    for (size_t i = 0; i < gpu.layout.total; i++) CU_ASSERT_FATAL(gpu.adam_m[i] == 0.0f);

    Model other;
    test_random_model(&other, &cfg, 701);
    std::memcpy(gpu.params, other.params, other.layout.total * sizeof(float));
    model_sync_device(&gpu);
    Batch b;
    make_batch(&b, cfg.vocab_size, 702, 0);
    std::vector<float> lp_o(b.pb.N), lp_g(b.pb.N);
    model_forward(&other, &b.pb, lp_o.data(), NULL);
    model_forward(&gpu, &b.pb, lp_g.data(), NULL);
    CHECK_REL("log-probs after new weights", lp_g, lp_o, TOL_LOGP);
    model_free(&other);
    model_free(&cpu);
    model_free(&gpu);
}

void register_cuda_model_tests(void) {
    static const TestCase tests[] = {
        {"whole-model log-probs and entropies vs the CPU", test_logprobs_entropies},
        {"whole-model gradients vs the CPU", test_gradients},
        {"a shared prefix: vs the CPU and vs packing whole", test_shared_prefix},
        {"four SEGA steps: losses, norms and weights vs the CPU", test_sega_run},
        {"KV-cache sampling replayed through the CPU model", test_sampler},
        {"greedy decoding vs the CPU", test_greedy},
        {"host copies of the device's weights", test_host_copies},
        {NULL, NULL},
    };
    add_suite("cuda_model", tests);
}

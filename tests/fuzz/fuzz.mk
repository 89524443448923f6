# Fuzzing of gemc's parsers (tests/fuzz/README.md). Included by the top-level Makefile.
#   make fuzz-replay   the harnesses built with the normal toolchain (and SAN=1), run over
#                      their seed corpus and regressions; part of `make test`
#   make fuzz [FUZZ_SECONDS=600] [FUZZ_TARGETS="shard data"] [FUZZ_JOBS=2]
#                      libFuzzer runs with clang + ASan/UBSan, then line/branch coverage of each
#                      parser from the final corpus; writes tests/fuzz/RESULTS.md

FUZZ_NAMES   := safetensors model_config tokenizer config_yaml data shard metrics tb_events
FUZZ_TARGETS ?= $(FUZZ_NAMES)
FUZZ_SECONDS ?= 600
FUZZ_JOBS    ?= 2

# ---- replay with the normal toolchain ---------------------------------------------------------
FUZZ_REPLAY := $(BUILD)/fuzz_replay
FUZZ_REPLAY_BINS := $(FUZZ_NAMES:%=$(FUZZ_REPLAY)/fuzz_%)

$(FUZZ_REPLAY)/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay.o $(LIB_OBJ) \
                       $(GPU_OBJ) | check-deps
	@mkdir -p $(dir $@)
	$(MPICC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
.SECONDARY: $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/fuzz_%.o) $(BUILD)/tests/fuzz/replay.o

.PHONY: fuzz-replay fuzz
fuzz-replay: $(FUZZ_REPLAY_BINS)
	@for n in $(FUZZ_NAMES); do \
	  GEMC_FUZZ_SHARD_RAW=1 LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp:print_suppressions=0 \
	  ./$(FUZZ_REPLAY)/fuzz_$$n tests/fuzz/corpus/$$n \
	    $$(test -d tests/fuzz/regressions/$$n && echo tests/fuzz/regressions/$$n) || exit 1; \
	done

# `make test` replays them too (seconds). GEMC_FUZZ_SHARD_RAW=1: the real shards of the seed corpus
# are read as they are (fuzz_shard.c)
test-run: fuzz-replay

-include $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/fuzz_%.d) $(BUILD)/tests/fuzz/replay.d

# ---- libFuzzer and coverage builds (clang, always under build/fuzz) ---------------------------
FUZZ_CC   ?= clang
FUZZ_OUT  := build/fuzz
FUZZ_SRCS := $(LIB_SRC) src/model/gpu_none.c
MPI_CFLAGS := $(shell $(MPICC) --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell $(MPICC) --showme:link 2>/dev/null)
# the library's flags without the optimisation/sanitizer choice and without NCCL (no GPU here)
FUZZ_BASE := $(filter-out $(OPT) -DGEMC_HAVE_NCCL,$(CFLAGS)) $(MPI_CFLAGS) -g
FUZZ_SAN  := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := $(FUZZ_BASE) -O1 -Wno-pass-failed -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $(FUZZ_SAN)
FUZZ_COV_CFLAGS := $(FUZZ_BASE) -O0 -fprofile-instr-generate -fcoverage-mapping
FUZZ_LDLIBS := $(PKG_LIBS) $(BLAS_LIBS) -lm $(MPI_LIBS)

FUZZ_LIB_OBJ := $(FUZZ_SRCS:%.c=$(FUZZ_OUT)/obj/%.o)
FUZZ_COV_LIB_OBJ := $(FUZZ_SRCS:%.c=$(FUZZ_OUT)/covobj/%.o)

$(FUZZ_OUT)/obj/%.o: %.c | check-deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@
$(FUZZ_OUT)/covobj/%.o: %.c | check-deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_COV_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_OUT)/fuzz_%: $(FUZZ_OUT)/obj/tests/fuzz/fuzz_%.o $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) -fopenmp -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ $(FUZZ_LDLIBS)
$(FUZZ_OUT)/cov_%: $(FUZZ_OUT)/covobj/tests/fuzz/fuzz_%.o $(FUZZ_OUT)/covobj/tests/fuzz/replay.o \
                   $(FUZZ_COV_LIB_OBJ)
	$(FUZZ_CC) -fopenmp -fprofile-instr-generate -o $@ $^ $(FUZZ_LDLIBS)
.PRECIOUS: $(FUZZ_OUT)/fuzz_% $(FUZZ_OUT)/cov_% $(FUZZ_OUT)/obj/%.o $(FUZZ_OUT)/covobj/%.o

fuzz: $(FUZZ_TARGETS:%=$(FUZZ_OUT)/fuzz_%) $(FUZZ_TARGETS:%=$(FUZZ_OUT)/cov_%)
	FUZZ_OUT=$(FUZZ_OUT) FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) \
	  sh tools/fuzz_run.sh $(FUZZ_TARGETS)

-include $(FUZZ_LIB_OBJ:.o=.d) $(FUZZ_COV_LIB_OBJ:.o=.d) \
         $(FUZZ_NAMES:%=$(FUZZ_OUT)/obj/tests/fuzz/fuzz_%.d) \
         $(FUZZ_NAMES:%=$(FUZZ_OUT)/covobj/tests/fuzz/fuzz_%.d) $(FUZZ_OUT)/covobj/tests/fuzz/replay.d

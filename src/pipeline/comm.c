// The collectives behind comm.h. Each Comm owns a duplicate of its MPI communicator; COMM_MPI
// runs everything there, COMM_NCCL runs the allreduces and broadcasts of device buffers through
// NCCL (comm_nccl.c) and the rest (host gathers, barriers, f64 sums, the TensorParallel hooks on
// host buffers) through MPI.
//
// Every operation is started non-blocking and waited for by comm_wait, which polls it against
// the deadline pipeline.timeout: a rank whose partners died or hang prints one error line and
// aborts the job instead of hanging for ever.
//
// Same bits on every rank: MAX is exact; for SUM over floats the result is MPI_Iallreduce's.
// Open MPI and MPICH compute each element of an allreduce once and send it to every rank (ring,
// Rabenseifner), or in a recursive doubling whose pairwise additions commute, so every rank gets
// the same bits; the MPI standard only recommends it. tests/mpi/test_tp_mpi.c checks it on
// random data.
#include "pipeline/comm.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/comm_nccl.h"
#include "base/common.h"
#include "pipeline/mpi_check.h"

struct Comm {
    MPI_Comm mpi; // our duplicate
    CommBackend backend;
    double timeout_s;
    int rank, size;
    char name[96];
#ifdef GEMC_HAVE_NCCL
    CommNccl *nccl;
#endif
};

// The most elements (or bytes) one MPI call moves: its count is an int. GEMC_COMM_CHUNK (a
// positive count) lowers it, so that tests reach the chunked paths with small buffers.
static size_t max_count(void) {
    static size_t cached;
    if (!cached) {
        const char *v = getenv("GEMC_COMM_CHUNK");
        long x = v ? atol(v) : 0;
        cached = x > 0 && x < (1L << 30) ? (size_t)x : (size_t)1 << 30;
    }
    return cached;
}
#define MAX_COUNT max_count()

static int world_rank(void) {
    int init = 0, fin = 0, r = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

double comm_timeout_s(const Comm *c) {
    return c->timeout_s;
}

_Noreturn void comm_timeout_abort(const Comm *c, const char *what) {
    fflush(stdout);
    fprintf(stderr,
            "gemc: error: rank %d: no answer within pipeline.timeout = %g s while waiting for %s "
            "on %s (another rank died or hangs) (HINT: the first error of the job, on another "
            "rank, says why; raise pipeline.timeout when a step legitimately takes longer)\n",
            world_rank(), c->timeout_s, what, c->name);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

void comm_wait(Comm *c, MPI_Request *req, const char *what) {
    const double deadline = now_seconds() + c->timeout_s;
    long sleep_ns = 50000; // after the busy polls: 50 us, doubling up to 1 ms
    for (int polls = 0;; polls++) {
        int done = 0;
        mpiCheck(MPI_Test(req, &done, MPI_STATUS_IGNORE));
        if (done) return;
        if (polls < 2000) continue; // the short collectives of a layer answer within microseconds
        if (now_seconds() > deadline) comm_timeout_abort(c, what);
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
        if (sleep_ns < 1000000) sleep_ns *= 2;
        if (sleep_ns > 1000000) sleep_ns = 1000000;
    }
}

Comm *comm_create(MPI_Comm mpi, CommBackend backend, double timeout_s, const char *name) {
#ifndef GEMC_HAVE_NCCL
    if (backend == COMM_NCCL) {
        fflush(stdout);
        fprintf(stderr,
                "gemc: error: rank %d: NCCL collectives asked for %s, but this gemc was built "
                "without NCCL (HINT: set pipeline.collectives: mpi, or rebuild where nccl.h is "
                "found: /usr/include or $CUDA_HOME/include)\n",
                world_rank(), name ? name : "a communicator");
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
        exit(1);
    }
#endif
    Comm *c = callocCheck(1, sizeof *c);
    c->backend = backend;
    c->timeout_s = timeout_s > 0 ? timeout_s : 600.0;
    snprintf(c->name, sizeof c->name, "%s", name ? name : "communicator");
    // MPI_Comm_idup: the duplication is a collective too, with the same deadline
    MPI_Request req;
    mpiCheck(MPI_Comm_idup(mpi, &c->mpi, &req));
    comm_wait(c, &req, "the communicator's creation");
    mpiCheck(MPI_Comm_rank(c->mpi, &c->rank));
    mpiCheck(MPI_Comm_size(c->mpi, &c->size));
#ifdef GEMC_HAVE_NCCL
    if (backend == COMM_NCCL) c->nccl = comm_nccl_create(c, c->name);
#endif
    return c;
}

void comm_free(Comm *c) {
    if (!c) return;
#ifdef GEMC_HAVE_NCCL
    if (c->nccl) comm_nccl_free(c->nccl);
#endif
    MPI_Comm_free(&c->mpi);
    free(c);
}

int comm_rank(const Comm *c) {
    return c->rank;
}

int comm_size(const Comm *c) {
    return c->size;
}

MPI_Comm comm_mpi(const Comm *c) {
    return c->mpi;
}

CommBackend comm_backend(const Comm *c) {
    return c->backend;
}

// ---- MPI ------------------------------------------------------------------------------------

// In-place allreduce of n elements of `type` (elem bytes each), in calls of at most MAX_COUNT.
static void mpi_allreduce(Comm *c, void *buf, size_t n, MPI_Datatype type, size_t elem, MPI_Op op,
                          const char *opname) {
    char what[96];
    for (size_t off = 0; off < n; off += MAX_COUNT) {
        const size_t cnt = n - off < MAX_COUNT ? n - off : MAX_COUNT;
        snprintf(what, sizeof what, "an allreduce %s of %zu values", opname, n);
        MPI_Request req;
        mpiCheck(MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + off * elem, (int)cnt, type, op, c->mpi,
                                &req));
        comm_wait(c, &req, what);
    }
}

// An fp32 allreduce (MAX when max, else SUM) over c's route: NCCL on device buffers when c has
// NCCL, MPI on host buffers otherwise. label names the operation in a timeout's error.
static void allreduce_f32(Comm *c, float *buf, size_t n, int max, const char *label) {
#ifdef GEMC_HAVE_NCCL
    if (c->nccl) {
        char what[96];
        snprintf(what, sizeof what, "an allreduce %s (NCCL)", label);
        comm_nccl_allreduce(c->nccl, c, buf, n, 0, max, what);
        return;
    }
#endif
    mpi_allreduce(c, buf, n, MPI_FLOAT, sizeof(float), max ? MPI_MAX : MPI_SUM, label);
}

void comm_allreduce_sum_f32(Comm *c, float *buf, size_t n) {
    allreduce_f32(c, buf, n, 0, "SUM");
}

void comm_allreduce_max_f32(Comm *c, float *buf, size_t n) {
    allreduce_f32(c, buf, n, 1, "MAX");
}

void comm_allreduce_sum_f64(Comm *c, double *buf, size_t n) {
    mpi_allreduce(c, buf, n, MPI_DOUBLE, sizeof(double), MPI_SUM, "SUM");
}

void comm_bcast(Comm *c, void *buf, size_t bytes, int root) {
#ifdef GEMC_HAVE_NCCL
    if (c->nccl) {
        comm_nccl_bcast(c->nccl, c, buf, bytes, root, "a broadcast (NCCL)");
        return;
    }
#endif
    char what[96];
    snprintf(what, sizeof what, "a broadcast of %zu bytes from rank %d", bytes, root);
    for (size_t off = 0; off < bytes; off += MAX_COUNT) {
        const size_t cnt = bytes - off < MAX_COUNT ? bytes - off : MAX_COUNT;
        MPI_Request req;
        mpiCheck(MPI_Ibcast((char *)buf + off, (int)cnt, MPI_BYTE, root, c->mpi, &req));
        comm_wait(c, &req, what);
    }
}

void comm_gather(Comm *c, const void *send, void *recv, size_t bytes, int root) {
    char what[96];
    snprintf(what, sizeof what, "a gather of %zu bytes per rank to rank %d", bytes, root);
    if (bytes == 0) return;
    // chunk k of every rank lands at recv + r * bytes + off: the receive type is the chunk
    // resized to an extent of `bytes`, so rank r's piece goes r extents further
    for (size_t off = 0; off < bytes; off += MAX_COUNT) {
        const size_t cnt = bytes - off < MAX_COUNT ? bytes - off : MAX_COUNT;
        MPI_Datatype chunk, rtype;
        mpiCheck(MPI_Type_contiguous((int)cnt, MPI_BYTE, &chunk));
        mpiCheck(MPI_Type_create_resized(chunk, 0, (MPI_Aint)bytes, &rtype));
        mpiCheck(MPI_Type_commit(&rtype));
        MPI_Request req;
        mpiCheck(MPI_Igather((const char *)send + off, (int)cnt, MPI_BYTE,
                             c->rank == root ? (char *)recv + off : NULL, 1, rtype, root, c->mpi,
                             &req));
        comm_wait(c, &req, what);
        MPI_Type_free(&rtype);
        MPI_Type_free(&chunk);
    }
}

void comm_barrier(Comm *c) {
    MPI_Request req;
    mpiCheck(MPI_Ibarrier(c->mpi, &req));
    comm_wait(c, &req, "a barrier");
}

// The TensorParallel hooks, over the Comm's own route: host fp32 buffers on an MPI Comm, device
// buffers on a COMM_NCCL one (the partition's TensorParallel.device_buffers says which it hands).
void comm_tp_allreduce_sum(void *ctx, float *buf, size_t n) {
    allreduce_f32(ctx, buf, n, 0, "SUM (tensor parallel)");
}

void comm_tp_allreduce_max(void *ctx, float *buf, size_t n) {
    allreduce_f32(ctx, buf, n, 1, "MAX (tensor parallel)");
}

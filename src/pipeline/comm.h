// The collectives of the pipeline behind one interface, with two implementations:
//   COMM_MPI   host buffers over MPI: CPU ranks, and GPU ranks that share a GPU (NCCL refuses
//              two ranks of one communicator on the same device)
//   COMM_NCCL  device buffers over NCCL: GPU ranks on distinct GPUs (built where nccl.h exists)
//
// Every wait has a deadline (pipeline.timeout): the operation is started non-blocking and polled,
// and when the other ranks do not answer in time (one died or hangs) this rank prints one error
// line naming the communicator and the wait, and aborts the job instead of hanging.
#ifndef GEMC_COMM_H
#define GEMC_COMM_H

#include <mpi.h>
#include <stddef.h>

typedef enum { COMM_MPI, COMM_NCCL } CommBackend;

typedef struct Comm Comm;

// A communicator over the ranks of `mpi` (duplicated; the caller keeps its own). name says what
// it is in error messages ("tp group 0", "learner data-parallel"); timeout_s bounds every wait.
// COMM_NCCL needs a build with NCCL and one visible GPU per rank; asking for it elsewhere is a
// fatal error with a HINT (pipeline.collectives: mpi).
Comm *comm_create(MPI_Comm mpi, CommBackend backend, double timeout_s, const char *name);
void comm_free(Comm *c);
int comm_rank(const Comm *c);
int comm_size(const Comm *c);
MPI_Comm comm_mpi(const Comm *c);
CommBackend comm_backend(const Comm *c);

// In place over every rank of c. The result is the same bits on every rank.
void comm_allreduce_sum_f32(Comm *c, float *buf, size_t n);
void comm_allreduce_max_f32(Comm *c, float *buf, size_t n);
void comm_allreduce_sum_f64(Comm *c, double *buf, size_t n); // host only (metrics, counters)
// buf [bytes] from root to every rank of c.
void comm_bcast(Comm *c, void *buf, size_t bytes, int root);
// Each rank sends `bytes` bytes of send; root receives them back to back in rank order into recv
// (size * bytes; ignored on other ranks). Host only.
void comm_gather(Comm *c, const void *send, void *recv, size_t bytes, int root);
void comm_barrier(Comm *c);

// The TensorParallel hooks (src/model/tensor_parallel.h) that run on c: ctx is the Comm. Host
// buffers on a COMM_MPI Comm, device buffers on a COMM_NCCL one (device_buffers = 1).
void comm_tp_allreduce_sum(void *ctx, float *buf, size_t n);
void comm_tp_allreduce_max(void *ctx, float *buf, size_t n);

// Waits for a non-blocking MPI request with c's deadline; `what` names the wait in the error.
void comm_wait(Comm *c, MPI_Request *req, const char *what);

#endif

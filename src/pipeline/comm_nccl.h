// Between comm.c and its NCCL half (comm_nccl.c, built where nccl.h exists): the NCCL
// communicator of a Comm and the operations comm.c hands it.
#ifndef GEMC_COMM_NCCL_H
#define GEMC_COMM_NCCL_H

#include <stddef.h>

#include "pipeline/comm.h"

typedef struct CommNccl CommNccl;
CommNccl *comm_nccl_create(Comm *c, const char *name);
void comm_nccl_free(CommNccl *n);
// in place; f64 selects double (else float), max selects MAX (else SUM)
void comm_nccl_allreduce(CommNccl *n, Comm *c, void *buf, size_t count, int f64, int max,
                         const char *what);
void comm_nccl_bcast(CommNccl *n, Comm *c, void *buf, size_t bytes, int root, const char *what);

// comm.c's, for the NCCL half: the job's stop on a deadline, and the deadline itself
_Noreturn void comm_timeout_abort(const Comm *c, const char *what);
double comm_timeout_s(const Comm *c);

#endif

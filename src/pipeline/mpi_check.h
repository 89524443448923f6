// mpiCheck: every MPI call is checked, and a failure names the call site and the MPI error.
#ifndef GEMC_MPI_CHECK_H
#define GEMC_MPI_CHECK_H

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static inline void mpi_check(int err, const char *file, int line) {
    if (err != MPI_SUCCESS) {
        char msg[MPI_MAX_ERROR_STRING];
        int len = 0;
        MPI_Error_string(err, msg, &len);
        fprintf(stderr, "gemc: error: MPI failed at %s:%d: %s\n", file, line, msg);
        MPI_Abort(MPI_COMM_WORLD, 1);
        exit(1);
    }
}
#define mpiCheck(call) mpi_check((call), __FILE__, __LINE__)

#endif

// `mpirun -np N gemc train CONFIG`: GEM as a distributed pipeline (docs/design.md, "Ranks and data
// flow"). World ranks 0 .. generators-1 are generators, the rest learners in learners/tp
// data-parallel groups of tp tensor-parallel ranks.
#ifndef GEMC_PIPELINE_H
#define GEMC_PIPELINE_H

#include "config/config.h"

// Checks the launch against the config (N = generators + learners, learners divisible by tp)
// before MPI starts. Returns 0, or -1 with one error line.
int pipeline_check_launch(const GemConfig *c, int world_size);

// Runs this rank's role to the end of training (or to a SIGTERM checkpoint). Initialises and
// finalises MPI. Returns 0, or -1 with the error recorded; a failure after the ranks started
// aborts the whole job instead (MPI_Abort) so that no rank waits forever.
int pipeline_train(const GemConfig *c);

#endif

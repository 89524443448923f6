// How this process was started: alone, or as one rank of mpirun/srun.
#ifndef GEMC_LAUNCH_H
#define GEMC_LAUNCH_H

// The world size the launcher announced in the environment (Open MPI, PMI/PMIx, Slurm's srun),
// without initialising MPI; 1 when started alone.
int launcher_world_size(void);
// This process's rank as announced by the launcher; 0 when started alone.
int launcher_world_rank(void);
// This process's rank on its node (Open MPI, Slurm, MPICH), which picks its GPU; 0 when alone.
int launcher_local_rank(void);

#endif

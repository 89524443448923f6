// Deterministic random numbers: the same seed gives the same bits on every machine.
#ifndef GEMC_RNG_H
#define GEMC_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4]; // xoshiro256** state
} Rng;

void rng_seed(Rng *r, uint64_t seed); // state from splitmix64(seed)
uint64_t rng_u64(Rng *r);
float rng_uniform(Rng *r);      // [0, 1), 24 random bits
double rng_uniform_f64(Rng *r); // [0, 1), 53 random bits
float rng_normal(Rng *r);       // standard normal (Box-Muller in double, one value a call)

#endif

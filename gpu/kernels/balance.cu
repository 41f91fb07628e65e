// Ratios and coefficients from the two scores, on the device: the rule of balance.cuh over the
// state the scores kernel filled.
//
// Launch: one thread. alpha is validated on the host (finite, >= 0).
#include "balance.cuh"

extern "C" __global__ void ogm_balance(BalanceState* st, double alpha, unsigned int active) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    balance_state(st, alpha, active);
}

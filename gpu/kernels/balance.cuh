// Ratios and coefficients from the two scores (ogm_core::balance, rule for rule), as a device
// function: the balance kernel (balance.cu) and the fused step-loss kernel (scores.cu) both
// end with it, so the rule is written once.
//   r_v = s_v / s_a, r_a = 1 / r_v;
//   r_v > 1: k_v = 1 - tanh(alpha * relu(r_v)), k_a = 1; else (the tie included: audio is
//   slowed) k_a = 1 - tanh(alpha * relu(r_a)), k_v = 1;
//   alpha == 0: k = 1 exactly; both scores zero: no ratio, no modulation (k = 1, 1);
//   one score zero: IEEE division gives the official limit (ratio +inf, coefficient 0).
// Invalid scores (the scores kernel saw bad input) also give no modulation.
// `applied` is what the modulation kernel uses: the coefficients when the step is active
// (mode not Normal, epoch inside the window, decided on the host), else 1.
// alpha is validated on the host (finite, >= 0).
#pragma once
#include "common.cuh"

__device__ __forceinline__ double coefficient(double alpha, double ratio) {
    if (alpha == 0.0) return 1.0;
    double relu = ratio > 0.0 ? ratio : 0.0;
    return 1.0 - tanh(alpha * relu);
}

// Fills st's ratios and coefficients from st->score and st->score_ok. One thread.
__device__ __forceinline__ void balance_state(BalanceState* st, double alpha,
                                              unsigned int active) {
    const double sa = st->score[0], sv = st->score[1];
    const bool ok = st->score_ok[0] && st->score_ok[1] && isfinite(sa) && isfinite(sv) &&
                    sa >= 0.0 && sv >= 0.0;
    double ka = 1.0, kv = 1.0;
    if (ok && !(sa == 0.0 && sv == 0.0)) {
        const double rv = sv / sa;
        const double ra = 1.0 / rv;
        st->ratio[0] = ra;
        st->ratio[1] = rv;
        st->has_ratio = 1;
        if (rv > 1.0) kv = coefficient(alpha, rv); else ka = coefficient(alpha, ra);
    } else {
        st->ratio[0] = __longlong_as_double(0x7ff8000000000000ll);
        st->ratio[1] = __longlong_as_double(0x7ff8000000000000ll);
        st->has_ratio = 0;
    }
    st->coeff[0] = ka;
    st->coeff[1] = kv;
    st->applied[0] = active ? ka : 1.0;
    st->applied[1] = active ? kv : 1.0;
    st->active = active;
}

// int8 matrix products for sightd's matcher, written as plain loops for GCC's
// auto-vectoriser. See kernel.go for the contract.
#include "dots.h"

#include <string.h>

// dots_body multiplies every row of m (n rows) with every query (nq rows,
// already widened to int16) into dst[i*n + j]. Each row is read from memory
// once and widened into row (int16: the multiply-add of int16 pairs into
// int32 lanes, pmaddwd on x86 and smlal on ARM, is what the vectoriser finds);
// four queries share each load of the row.
static inline __attribute__((always_inline)) void
dots_body(int32_t *restrict dst, const int16_t *restrict q, size_t nq,
          const int8_t *restrict m, size_t n, size_t dim, int16_t *restrict row)
{
	for (size_t j = 0; j < n; j++) {
		const int8_t *r8 = m + j * dim;
		for (size_t k = 0; k < dim; k++)
			row[k] = r8[k];
		size_t i = 0;
		for (; i + 4 <= nq; i += 4) {
			const int16_t *q0 = q + i * dim, *q1 = q0 + dim, *q2 = q1 + dim, *q3 = q2 + dim;
			int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
			for (size_t k = 0; k < dim; k++) {
				int32_t x = row[k];
				s0 += x * q0[k];
				s1 += x * q1[k];
				s2 += x * q2[k];
				s3 += x * q3[k];
			}
			dst[i * n + j] = s0;
			dst[(i + 1) * n + j] = s1;
			dst[(i + 2) * n + j] = s2;
			dst[(i + 3) * n + j] = s3;
		}
		for (; i < nq; i++) {
			const int16_t *q0 = q + i * dim;
			int32_t s0 = 0;
			for (size_t k = 0; k < dim; k++)
				s0 += (int32_t)row[k] * q0[k];
			dst[i * n + j] = s0;
		}
	}
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// One copy per instruction set; glibc's ifunc picks one when the program is
// loaded: AVX2 where the CPU has it, SSE2 (the x86-64 baseline) elsewhere.
#define SIGHTD_CLONES __attribute__((target_clones("avx2", "default")))
#else
// arm64: NEON is the baseline (Raspberry Pi 4 and 5), nothing to choose.
#define SIGHTD_CLONES
#endif

SIGHTD_CLONES void
sightd_dots(int32_t *dst, const int8_t *q, size_t nq, const int8_t *m, size_t n,
            size_t dim, int16_t *scratch)
{
	int16_t *row = scratch, *qw = scratch + dim;
	for (size_t k = 0; k < nq * dim; k++)
		qw[k] = q[k];
	dots_body(dst, qw, nq, m, n, dim, row);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// The same test as the ifunc resolver that target_clones generates.
const char *sightd_isa(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") ? "avx2" : "sse2";
}
#elif defined(__aarch64__)
const char *sightd_isa(void) { return "neon"; }
#else
const char *sightd_isa(void) { return "generic"; }
#endif

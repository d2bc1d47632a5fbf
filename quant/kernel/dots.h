#ifndef SIGHTD_DOTS_H
#define SIGHTD_DOTS_H

#include <stddef.h>
#include <stdint.h>

void sightd_dots(int32_t *dst, const int8_t *q, size_t nq, const int8_t *m, size_t n,
                 size_t dim, int16_t *scratch);
const char *sightd_isa(void);
#endif

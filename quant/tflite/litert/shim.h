// C glue: opaque option payloads owned by the runtime, aligned host buffers,
// and the library's own path.
#ifndef SIGHTD_LITERT_SHIM_H
#define SIGHTD_LITERT_SHIM_H

#include "litert_c.h"

// Creates the environment with only the CPU accelerator registered (no GPU
// or NPU plugin probing) and the runtime's log at min_severity and above.
LiteRtStatus sightd_create_environment(int min_severity, LiteRtEnvironment* env);

// Adds an opaque options entry whose payload is a copy of text (TOML), freed
// by the runtime with the options.
LiteRtStatus sightd_add_text_options(LiteRtOptions options, const char* identifier, const char* text);

// 64-byte aligned, zeroed host memory (XNNPACK reads inputs with wide loads).
void* sightd_aligned_alloc(size_t size);
void sightd_aligned_free(void* p);

// cgo cannot reach bit-fields: the layout's rank through these.
int sightd_layout_rank(const LiteRtLayout* l);
void sightd_layout_set_rank(LiteRtLayout* l, int rank);

// The path of the loaded libLiteRt.so, or "" when unknown.
const char* sightd_litert_path(void);

#endif

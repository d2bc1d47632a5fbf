// C glue for the Go binding: an error reporter that collects messages into a
// buffer owned by the interpreter, and the two delegates this runtime exports
// without headers (XNNPACK) or from a separate library (the external delegate).
#ifndef SIGHTD_TFLITE_SHIM_H
#define SIGHTD_TFLITE_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include "tensorflow/lite/c/c_api.h"

#define SIGHTD_ERRBUF_SIZE 4096

typedef struct {
  char buf[SIGHTD_ERRBUF_SIZE];
  size_t len;
} sightd_errbuf;

void sightd_set_reporter(TfLiteInterpreterOptions* opts, sightd_errbuf* eb);
void sightd_errbuf_reset(sightd_errbuf* eb);

// XNNPACK. flags: 0x1 = QS8 (signed int8 kernels), 0x2 = QU8 (uint8 kernels).
TfLiteDelegate* sightd_xnnpack_create(int32_t num_threads, uint32_t flags);
void sightd_xnnpack_delete(TfLiteDelegate* d);

// The external delegate (libexternal_delegate_obj.so) loading a plugin such as
// libedgetpu.so.1. Returns NULL and writes a reason into err on failure.
typedef struct sightd_external sightd_external;
sightd_external* sightd_external_create(const char* obj_lib, const char* plugin_lib,
                                        const char** keys, const char** values, int n,
                                        char* err, size_t errlen);
TfLiteDelegate* sightd_external_delegate(sightd_external* e);
void sightd_external_delete(sightd_external* e);

#endif

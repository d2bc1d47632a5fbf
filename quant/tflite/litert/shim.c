#define _GNU_SOURCE
#include "shim.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sightd_litert_api sightd_lrt;
static void* litert_handle;

int sightd_litert_load(char* err, size_t errlen) {
  if (litert_handle != NULL) return 0;
  void* h = dlopen("libLiteRt.so", RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    snprintf(err, errlen, "%s", dlerror());
    return -1;
  }
  sightd_litert_api api;
  memset(&api, 0, sizeof(api));
#define SIGHTD_X_LOAD(ret, name, params, args)                                    \
  *(void**)(&api.name) = dlsym(h, "LiteRt" #name);                                \
  if (api.name == NULL) {                                                          \
    snprintf(err, errlen, "libLiteRt.so has no LiteRt%s: not LiteRT 2.3", #name); \
    dlclose(h);                                                                    \
    return -1;                                                                     \
  }
#define SIGHTD_V_LOAD(name, params, args) SIGHTD_X_LOAD(void, name, params, args)
  SIGHTD_LITERT_FUNCS(SIGHTD_X_LOAD, SIGHTD_V_LOAD)
  sightd_lrt = api;
  litert_handle = h;
  return 0;
}

LiteRtStatus sightd_create_environment(int min_severity, LiteRtEnvironment* env) {
  LiteRtEnvOption opts[2];
  memset(opts, 0, sizeof(opts));
  opts[0].tag = SIGHTD_LITERT_ENV_AUTO_REGISTER_ACCELERATORS;
  opts[0].value.type = SIGHTD_LITERT_ANY_INT;
  opts[0].value.int_value = SIGHTD_LITERT_HW_CPU;
  opts[1].tag = SIGHTD_LITERT_ENV_MIN_LOGGER_SEVERITY;
  opts[1].value.type = SIGHTD_LITERT_ANY_INT;
  opts[1].value.int_value = min_severity;
  return lrt_CreateEnvironment(2, opts, env);
}

LiteRtStatus sightd_add_text_options(LiteRtOptions options, const char* identifier, const char* text) {
  char* payload = strdup(text);
  if (payload == NULL) return 2;  // memory allocation failure
  LiteRtOpaqueOptions opaque = NULL;
  LiteRtStatus st = lrt_CreateOpaqueOptions(identifier, payload, free, &opaque);
  if (st != SIGHTD_LITERT_OK) {
    free(payload);
    return st;
  }
  st = lrt_AddOpaqueOptions(options, opaque);
  if (st != SIGHTD_LITERT_OK) lrt_DestroyOpaqueOptions(opaque);
  return st;
}

void* sightd_aligned_alloc(size_t size) {
  void* p = NULL;
  if (size == 0) size = 64;
  if (posix_memalign(&p, 64, size) != 0) return NULL;
  memset(p, 0, size);
  return p;
}

void sightd_aligned_free(void* p) { free(p); }

const char* sightd_litert_path(void) {
  Dl_info info;
  if (sightd_lrt.CreateEnvironment == NULL || dladdr(*(void**)(&sightd_lrt.CreateEnvironment), &info) == 0 || info.dli_fname == NULL) return "";
  return info.dli_fname;
}

int sightd_layout_rank(const LiteRtLayout* l) { return (int)l->rank; }

void sightd_layout_set_rank(LiteRtLayout* l, int rank) {
  l->rank = (unsigned)rank;
  l->has_strides = 0;
}

#include "shim.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void sightd_reporter(void* user_data, const char* format, va_list args) {
  sightd_errbuf* eb = (sightd_errbuf*)user_data;
  size_t room = sizeof(eb->buf) - eb->len;
  if (room < 4) return;
  if (eb->len > 0) {
    eb->buf[eb->len++] = ';';
    eb->buf[eb->len++] = ' ';
    room -= 2;
  }
  int n = vsnprintf(eb->buf + eb->len, room, format, args);
  if (n < 0) return;
  eb->len += ((size_t)n < room) ? (size_t)n : room - 1;
  // The runtime ends some messages with a newline; keep one line per message.
  while (eb->len > 0 && eb->buf[eb->len - 1] == '\n') eb->len--;
  eb->buf[eb->len] = 0;
}

void sightd_set_reporter(TfLiteInterpreterOptions* opts, sightd_errbuf* eb) {
  TfLiteInterpreterOptionsSetErrorReporter(opts, sightd_reporter, eb);
}

void sightd_errbuf_reset(sightd_errbuf* eb) {
  eb->len = 0;
  eb->buf[0] = 0;
}

// Declared here because the runtime exports these symbols without a header.
// Options are passed through a zeroed buffer larger than any known layout of
// TfLiteXNNPackDelegateOptions ({int32 num_threads; uint32 flags; ...}), so a
// runtime whose struct has more trailing fields reads zeros (their defaults).
extern TfLiteDelegate* TfLiteXNNPackDelegateCreate(const void* options);
extern void TfLiteXNNPackDelegateDelete(TfLiteDelegate* delegate);

TfLiteDelegate* sightd_xnnpack_create(int32_t num_threads, uint32_t flags) {
  union {
    struct {
      int32_t num_threads;
      uint32_t flags;
    } o;
    uint64_t pad[16];
  } opts;
  memset(&opts, 0, sizeof(opts));
  opts.o.num_threads = num_threads;
  opts.o.flags = flags;
  return TfLiteXNNPackDelegateCreate(&opts);
}

void sightd_xnnpack_delete(TfLiteDelegate* d) { TfLiteXNNPackDelegateDelete(d); }

// Layout of TfLiteExternalDelegateOptions (external_delegate.h; its header uses a
// C++ constant for the array size, so it cannot be included from C).
#define SIGHTD_EXT_MAX_OPTIONS 256
typedef struct sightd_ext_options {
  const char* lib_path;
  int count;
  const char* keys[SIGHTD_EXT_MAX_OPTIONS];
  const char* values[SIGHTD_EXT_MAX_OPTIONS];
  TfLiteStatus (*insert)(struct sightd_ext_options* options, const char* key,
                         const char* value);
} sightd_ext_options;

typedef sightd_ext_options (*ext_default_fn)(const char*);
typedef TfLiteDelegate* (*ext_create_fn)(const sightd_ext_options*);
typedef void (*ext_delete_fn)(TfLiteDelegate*);

struct sightd_external {
  void* handle;
  ext_delete_fn del;
  TfLiteDelegate* delegate;
};

sightd_external* sightd_external_create(const char* obj_lib, const char* plugin_lib,
                                        const char** keys, const char** values, int n,
                                        char* err, size_t errlen) {
  if (n > SIGHTD_EXT_MAX_OPTIONS) {
    snprintf(err, errlen, "too many delegate options (%d)", n);
    return NULL;
  }
  // The plugin itself must be loadable; checking first gives a clearer reason
  // than the external delegate's own log line.
  void* plugin = dlopen(plugin_lib, RTLD_NOW | RTLD_LOCAL);
  if (plugin == NULL) {
    snprintf(err, errlen, "cannot load %s: %s", plugin_lib, dlerror());
    return NULL;
  }
  dlclose(plugin);
  void* h = dlopen(obj_lib, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    snprintf(err, errlen, "cannot load %s: %s", obj_lib, dlerror());
    return NULL;
  }
  ext_default_fn def = (ext_default_fn)dlsym(h, "TfLiteExternalDelegateOptionsDefault");
  ext_create_fn create = (ext_create_fn)dlsym(h, "TfLiteExternalDelegateCreate");
  ext_delete_fn del = (ext_delete_fn)dlsym(h, "TfLiteExternalDelegateDelete");
  if (def == NULL || create == NULL || del == NULL) {
    snprintf(err, errlen, "%s does not export the external delegate API", obj_lib);
    dlclose(h);
    return NULL;
  }
  sightd_ext_options opts = def(plugin_lib);
  for (int i = 0; i < n; i++) {
    if (opts.insert(&opts, keys[i], values[i]) != kTfLiteOk) {
      snprintf(err, errlen, "delegate option %s rejected", keys[i]);
      dlclose(h);
      return NULL;
    }
  }
  TfLiteDelegate* d = create(&opts);
  if (d == NULL) {
    snprintf(err, errlen, "%s found no usable device", plugin_lib);
    dlclose(h);
    return NULL;
  }
  sightd_external* e = (sightd_external*)calloc(1, sizeof(*e));
  if (e == NULL) {
    del(d);
    dlclose(h);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  e->handle = h;
  e->del = del;
  e->delegate = d;
  return e;
}

TfLiteDelegate* sightd_external_delegate(sightd_external* e) { return e->delegate; }

void sightd_external_delete(sightd_external* e) {
  if (e == NULL) return;
  e->del(e->delegate);
  dlclose(e->handle);
  free(e);
}

// Declarations of the part of the LiteRT C API (libLiteRt.so, ai-edge-litert
// 2.3) that sightd uses. The wheel ships no headers, so these are written here
// from LiteRT's published litert/c/ headers; the layouts that cross the
// boundary are checked by static asserts and by the package's tests.
#ifndef SIGHTD_LITERT_C_H
#define SIGHTD_LITERT_C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef int LiteRtStatus;  // 0 is success; codes in status.go
#define SIGHTD_LITERT_OK 0

typedef struct LiteRtEnvironmentT* LiteRtEnvironment;
typedef struct LiteRtModelT* LiteRtModel;
typedef struct LiteRtSignatureT* LiteRtSignature;
typedef struct LiteRtTensorT* LiteRtTensor;
typedef struct LiteRtOptionsT* LiteRtOptions;
typedef struct LiteRtOpaqueOptionsT* LiteRtOpaqueOptions;
typedef struct LiteRtCompiledModelT* LiteRtCompiledModel;
typedef struct LiteRtTensorBufferT* LiteRtTensorBuffer;
typedef struct LiteRtTensorBufferRequirementsT* LiteRtTensorBufferRequirements;
typedef struct LiteRtAcceleratorT* LiteRtAccelerator;

// Element types share TfLiteType's numbering.
typedef int LiteRtElementType;

// A tensor's shape: rank in the low 7 bits of the first word, then up to 8
// dimensions and strides.
#define SIGHTD_LITERT_MAX_RANK 8
typedef struct {
  unsigned int rank : 7;
  unsigned int has_strides : 1;
  int32_t dimensions[SIGHTD_LITERT_MAX_RANK];
  uint32_t strides[SIGHTD_LITERT_MAX_RANK];
} LiteRtLayout;

typedef struct {
  LiteRtElementType element_type;
  LiteRtLayout layout;
} LiteRtRankedTensorType;

_Static_assert(sizeof(LiteRtLayout) == 68, "LiteRtLayout is 68 bytes");
_Static_assert(sizeof(LiteRtRankedTensorType) == 72, "LiteRtRankedTensorType is 72 bytes");

// Tensor type ids: ranked 0, unranked 1.
typedef int LiteRtTensorTypeId;
// Quantization ids: none 0, per tensor 1, per channel 2, block-wise 3.
typedef int LiteRtQuantizationTypeId;

typedef struct {
  float scale;
  int64_t zero_point;
} LiteRtQuantizationPerTensor;
_Static_assert(sizeof(LiteRtQuantizationPerTensor) == 16, "per-tensor quantization is 16 bytes");

typedef struct {
  int major;
  int minor;
  int patch;
} LiteRtApiVersion;

// Hardware accelerator bits.
#define SIGHTD_LITERT_HW_NONE 0
#define SIGHTD_LITERT_HW_CPU 1

// Tensor buffer lock modes.
#define SIGHTD_LITERT_LOCK_READ 0
#define SIGHTD_LITERT_LOCK_WRITE 1

typedef void (*LiteRtHostMemoryDeallocator)(void* addr);

// An environment option: a tag and a tagged value.
typedef struct {
  int type;  // 2: int64
  union {
    bool bool_value;
    int64_t int_value;
    double real_value;
    const char* str_value;
    const void* ptr_value;
  };
} LiteRtAny;
typedef struct {
  int tag;
  LiteRtAny value;
} LiteRtEnvOption;
_Static_assert(sizeof(LiteRtEnvOption) == 24, "LiteRtEnvOption is 24 bytes");

// Option tags and values sightd sets.
#define SIGHTD_LITERT_ANY_INT 2
#define SIGHTD_LITERT_ENV_AUTO_REGISTER_ACCELERATORS 24
#define SIGHTD_LITERT_ENV_MIN_LOGGER_SEVERITY 25
// Log severities: verbose 0, info 1, warning 2, error 3, silent 4.
#define SIGHTD_LITERT_LOG_ERROR 3

// The functions sightd calls, loaded from libLiteRt.so with dlopen/dlsym at
// first use (sightd_litert_load), so that a missing library is an error with a
// hint rather than a loader failure before main, and commands that run no
// model work without it. X(return type, name without "LiteRt", parameters,
// arguments); V(...) for those that return nothing.
#define SIGHTD_LITERT_FUNCS(X, V)                                                                      \
  X(LiteRtStatus, CreateEnvironment, (int n, const LiteRtEnvOption* o, LiteRtEnvironment* e), (n, o, e)) \
  V(DestroyEnvironment, (LiteRtEnvironment e), (e))                                                    \
  X(LiteRtStatus, CreateModelFromFile, (LiteRtEnvironment e, const char* f, LiteRtModel* m), (e, f, m)) \
  X(LiteRtStatus, CreateModelFromBuffer, (LiteRtEnvironment e, const void* a, size_t n, LiteRtModel* m), \
    (e, a, n, m))                                                                                      \
  V(DestroyModel, (LiteRtModel m), (m))                                                                \
  X(LiteRtStatus, GetNumModelSignatures, (LiteRtModel m, size_t* n), (m, n))                           \
  X(LiteRtStatus, GetModelSignature, (LiteRtModel m, size_t i, LiteRtSignature* s), (m, i, s))         \
  X(LiteRtStatus, GetNumSignatureInputs, (LiteRtSignature s, size_t* n), (s, n))                       \
  X(LiteRtStatus, GetNumSignatureOutputs, (LiteRtSignature s, size_t* n), (s, n))                      \
  X(LiteRtStatus, GetSignatureInputTensorByIndex, (LiteRtSignature s, size_t i, LiteRtTensor* t), (s, i, t)) \
  X(LiteRtStatus, GetSignatureOutputTensorByIndex, (LiteRtSignature s, size_t i, LiteRtTensor* t), (s, i, t)) \
  X(LiteRtStatus, GetTensorName, (LiteRtTensor t, const char** n), (t, n))                             \
  X(LiteRtStatus, GetTensorTypeId, (LiteRtTensor t, LiteRtTensorTypeId* id), (t, id))                  \
  X(LiteRtStatus, GetRankedTensorType, (LiteRtTensor t, LiteRtRankedTensorType* r), (t, r))            \
  X(LiteRtStatus, GetQuantizationTypeId, (LiteRtTensor t, LiteRtQuantizationTypeId* id), (t, id))      \
  X(LiteRtStatus, GetPerTensorQuantization, (LiteRtTensor t, LiteRtQuantizationPerTensor* q), (t, q))  \
  X(LiteRtStatus, CreateOptions, (LiteRtOptions* o), (o))                                              \
  V(DestroyOptions, (LiteRtOptions o), (o))                                                            \
  X(LiteRtStatus, SetOptionsHardwareAccelerators, (LiteRtOptions o, int a), (o, a))                    \
  /* Takes ownership of the opaque options on success. */                                             \
  X(LiteRtStatus, AddOpaqueOptions, (LiteRtOptions o, LiteRtOpaqueOptions p), (o, p))                  \
  X(LiteRtStatus, CreateOpaqueOptions, (const char* id, void* p, void (*d)(void*), LiteRtOpaqueOptions* o), \
    (id, p, d, o))                                                                                     \
  V(DestroyOpaqueOptions, (LiteRtOpaqueOptions o), (o))                                                \
  X(LiteRtStatus, CreateCompiledModel, (LiteRtEnvironment e, LiteRtModel m, LiteRtOptions o, LiteRtCompiledModel* c), \
    (e, m, o, c))                                                                                      \
  V(DestroyCompiledModel, (LiteRtCompiledModel c), (c))                                                \
  X(LiteRtStatus, GetCompiledModelInputBufferRequirements,                                             \
    (LiteRtCompiledModel c, size_t s, size_t i, LiteRtTensorBufferRequirements* r), (c, s, i, r))      \
  X(LiteRtStatus, GetCompiledModelOutputBufferRequirements,                                            \
    (LiteRtCompiledModel c, size_t s, size_t i, LiteRtTensorBufferRequirements* r), (c, s, i, r))      \
  X(LiteRtStatus, GetCompiledModelOutputTensorLayouts,                                                 \
    (LiteRtCompiledModel c, size_t s, size_t n, LiteRtLayout* l, bool u), (c, s, n, l, u))             \
  X(LiteRtStatus, CompiledModelResizeInputTensorNonStrict,                                             \
    (LiteRtCompiledModel c, size_t s, size_t i, const int* d, size_t r), (c, s, i, d, r))              \
  X(LiteRtStatus, RunCompiledModel,                                                                    \
    (LiteRtCompiledModel c, size_t s, size_t ni, LiteRtTensorBuffer* in, size_t no, LiteRtTensorBuffer* out), \
    (c, s, ni, in, no, out))                                                                           \
  X(LiteRtStatus, CompiledModelIsFullyAccelerated, (LiteRtCompiledModel c, bool* f), (c, f))           \
  /* The caller frees *m with free(); needs the buffer error reporter. */                              \
  X(LiteRtStatus, CompiledModelGetErrorMessages, (LiteRtCompiledModel c, char** m), (c, m))            \
  X(LiteRtStatus, CompiledModelClearErrors, (LiteRtCompiledModel c), (c))                              \
  X(LiteRtStatus, GetTensorBufferRequirementsBufferSize, (LiteRtTensorBufferRequirements r, size_t* n), (r, n)) \
  X(LiteRtStatus, CreateTensorBufferFromHostMemory,                                                    \
    (const LiteRtRankedTensorType* t, void* a, size_t n, LiteRtHostMemoryDeallocator d, LiteRtTensorBuffer* b), \
    (t, a, n, d, b))                                                                                   \
  V(DestroyTensorBuffer, (LiteRtTensorBuffer b), (b))                                                  \
  X(LiteRtStatus, GetNumAccelerators, (LiteRtEnvironment e, size_t* n), (e, n))                        \
  X(LiteRtStatus, GetAccelerator, (LiteRtEnvironment e, size_t i, LiteRtAccelerator* a), (e, i, a))    \
  X(LiteRtStatus, GetAcceleratorName, (LiteRtAccelerator a, const char** n), (a, n))                   \
  X(LiteRtStatus, GetAcceleratorVersion, (LiteRtAccelerator a, LiteRtApiVersion* v), (a, v))

#define SIGHTD_X_FIELD(ret, name, params, args) ret(*name) params;
#define SIGHTD_V_FIELD(name, params, args) void(*name) params;
typedef struct {
  SIGHTD_LITERT_FUNCS(SIGHTD_X_FIELD, SIGHTD_V_FIELD)
} sightd_litert_api;
extern sightd_litert_api sightd_lrt;

// lrt_NAME calls LiteRtNAME; only after sightd_litert_load succeeded.
#define SIGHTD_X_WRAP(ret, name, params, args) \
  static inline ret lrt_##name params { return sightd_lrt.name args; }
#define SIGHTD_V_WRAP(name, params, args) \
  static inline void lrt_##name params { sightd_lrt.name args; }
SIGHTD_LITERT_FUNCS(SIGHTD_X_WRAP, SIGHTD_V_WRAP)

// Loads libLiteRt.so (through the binary's run path) and every function
// above. Returns 0, or -1 with the reason in err.
int sightd_litert_load(char* err, size_t errlen);

#endif

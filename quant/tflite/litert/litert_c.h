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
  int32_t quantized_dimension;
  uint64_t num_channels;
  float* scales;
  int64_t* zero_points;
} LiteRtQuantizationPerChannel;

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

LiteRtStatus LiteRtCreateEnvironment(int num_options, const LiteRtEnvOption* options, LiteRtEnvironment* env);
void LiteRtDestroyEnvironment(LiteRtEnvironment env);

LiteRtStatus LiteRtCreateModelFromFile(LiteRtEnvironment env, const char* filename, LiteRtModel* model);
LiteRtStatus LiteRtCreateModelFromBuffer(LiteRtEnvironment env, const void* addr, size_t size, LiteRtModel* model);
void LiteRtDestroyModel(LiteRtModel model);
LiteRtStatus LiteRtGetNumModelSignatures(LiteRtModel model, size_t* n);
LiteRtStatus LiteRtGetModelSignature(LiteRtModel model, size_t index, LiteRtSignature* sig);
LiteRtStatus LiteRtGetNumSignatureInputs(LiteRtSignature sig, size_t* n);
LiteRtStatus LiteRtGetNumSignatureOutputs(LiteRtSignature sig, size_t* n);
LiteRtStatus LiteRtGetSignatureInputTensorByIndex(LiteRtSignature sig, size_t i, LiteRtTensor* t);
LiteRtStatus LiteRtGetSignatureOutputTensorByIndex(LiteRtSignature sig, size_t i, LiteRtTensor* t);

LiteRtStatus LiteRtGetTensorName(LiteRtTensor t, const char** name);
LiteRtStatus LiteRtGetTensorTypeId(LiteRtTensor t, LiteRtTensorTypeId* id);
LiteRtStatus LiteRtGetRankedTensorType(LiteRtTensor t, LiteRtRankedTensorType* type);
LiteRtStatus LiteRtGetQuantizationTypeId(LiteRtTensor t, LiteRtQuantizationTypeId* id);
LiteRtStatus LiteRtGetPerTensorQuantization(LiteRtTensor t, LiteRtQuantizationPerTensor* q);
LiteRtStatus LiteRtGetPerChannelQuantization(LiteRtTensor t, LiteRtQuantizationPerChannel* q);

LiteRtStatus LiteRtCreateOptions(LiteRtOptions* options);
void LiteRtDestroyOptions(LiteRtOptions options);
LiteRtStatus LiteRtSetOptionsHardwareAccelerators(LiteRtOptions options, int accelerators);
// Takes ownership of opaque on success.
LiteRtStatus LiteRtAddOpaqueOptions(LiteRtOptions options, LiteRtOpaqueOptions opaque);
LiteRtStatus LiteRtCreateOpaqueOptions(const char* identifier, void* payload, void (*destructor)(void*),
                                       LiteRtOpaqueOptions* options);
void LiteRtDestroyOpaqueOptions(LiteRtOpaqueOptions options);

LiteRtStatus LiteRtCreateCompiledModel(LiteRtEnvironment env, LiteRtModel model, LiteRtOptions options,
                                       LiteRtCompiledModel* compiled);
void LiteRtDestroyCompiledModel(LiteRtCompiledModel compiled);
LiteRtStatus LiteRtGetCompiledModelInputBufferRequirements(LiteRtCompiledModel compiled, size_t sig, size_t i,
                                                           LiteRtTensorBufferRequirements* req);
LiteRtStatus LiteRtGetCompiledModelOutputBufferRequirements(LiteRtCompiledModel compiled, size_t sig, size_t i,
                                                            LiteRtTensorBufferRequirements* req);
LiteRtStatus LiteRtGetCompiledModelOutputTensorLayouts(LiteRtCompiledModel compiled, size_t sig, size_t n,
                                                       LiteRtLayout* layouts, bool update_allocation);
LiteRtStatus LiteRtCompiledModelResizeInputTensorNonStrict(LiteRtCompiledModel compiled, size_t sig, size_t i,
                                                           const int* dims, size_t rank);
LiteRtStatus LiteRtRunCompiledModel(LiteRtCompiledModel compiled, size_t sig, size_t n_in, LiteRtTensorBuffer* in,
                                    size_t n_out, LiteRtTensorBuffer* out);
LiteRtStatus LiteRtCompiledModelIsFullyAccelerated(LiteRtCompiledModel compiled, bool* full);
// The caller frees *messages with free(); needs the buffer error reporter.
LiteRtStatus LiteRtCompiledModelGetErrorMessages(LiteRtCompiledModel compiled, char** messages);
LiteRtStatus LiteRtCompiledModelClearErrors(LiteRtCompiledModel compiled);

LiteRtStatus LiteRtGetTensorBufferRequirementsBufferSize(LiteRtTensorBufferRequirements req, size_t* size);
LiteRtStatus LiteRtCreateTensorBufferFromHostMemory(const LiteRtRankedTensorType* type, void* addr, size_t size,
                                                    LiteRtHostMemoryDeallocator deallocator, LiteRtTensorBuffer* buf);
void LiteRtDestroyTensorBuffer(LiteRtTensorBuffer buf);

LiteRtStatus LiteRtGetNumAccelerators(LiteRtEnvironment env, size_t* n);
LiteRtStatus LiteRtGetAccelerator(LiteRtEnvironment env, size_t i, LiteRtAccelerator* acc);
LiteRtStatus LiteRtGetAcceleratorName(LiteRtAccelerator acc, const char** name);
LiteRtStatus LiteRtGetAcceleratorVersion(LiteRtAccelerator acc, LiteRtApiVersion* version);

#endif

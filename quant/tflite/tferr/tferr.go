// Package tferr holds the errors that quant/tflite and its runtime bindings
// (quant/tflite/litert, quant/tflite/tfl29) share, so that callers match one
// set of sentinels with errors.Is whichever runtime ran the model.
package tferr

import "errors"

// Sentinel errors; match them with errors.Is.
var (
	ErrModelInvalid   = errors.New("tflite: invalid model")
	ErrClosed         = errors.New("tflite: closed")
	ErrNotAllocated   = errors.New("tflite: tensors not allocated")
	ErrTensorMismatch = errors.New("tflite: tensor mismatch")
	ErrRuntime        = errors.New("tflite: runtime error")
	ErrNoEdgeTPU      = errors.New("tflite: Edge TPU unavailable")
	ErrIndex          = errors.New("tflite: tensor index out of range")
	ErrNoRuntime      = errors.New("tflite: runtime library missing")
)

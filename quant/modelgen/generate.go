package modelgen

// The flatbuffers Go code for our TFLite schema subset is checked in; this
// regenerates it with Debian's flatc 2.0.8, which matches the
// github.com/google/flatbuffers v2.0.8 runtime in go.mod. The package lives in
// quant/tflite/tflschema, where quant/tflite reads models with it too.
//go:generate rm -rf ../tflite/tflschema
//go:generate flatc --go --go-namespace tflschema -o ../tflite schema/tflite.fbs

package tfl29

// The Makefile passes TFLITE_DIR through CGO_CFLAGS / CGO_LDFLAGS, which cgo puts
// before these directives, so a user's own runtime wins; these defaults let a plain
// `go build` or `go test` find the runtime that `make deps` unpacked.

/*
#cgo linux,amd64 CFLAGS: -I${SRCDIR}/../../../third_party/tflite/linux_amd64/include
#cgo linux,amd64 LDFLAGS: -L${SRCDIR}/../../../third_party/tflite/linux_amd64/lib -Wl,-rpath,${SRCDIR}/../../../third_party/tflite/linux_amd64/lib
#cgo linux,arm64 CFLAGS: -I${SRCDIR}/../../../third_party/tflite/linux_arm64/include
#cgo linux,arm64 LDFLAGS: -L${SRCDIR}/../../../third_party/tflite/linux_arm64/lib -Wl,-rpath,${SRCDIR}/../../../third_party/tflite/linux_arm64/lib
#cgo LDFLAGS: -ltensorflowlite_c -ldl
*/
import "C"

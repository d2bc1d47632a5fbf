package litert

// The Makefile passes LITERT_DIR through CGO_LDFLAGS, which cgo puts before
// these directives, so a user's own runtime wins; these defaults let a plain
// `go build` or `go test` find the runtime that `make deps` unpacked.

/*
#cgo linux,amd64 LDFLAGS: -L${SRCDIR}/../../../third_party/litert/linux_amd64/lib -Wl,-rpath,${SRCDIR}/../../../third_party/litert/linux_amd64/lib
#cgo linux,arm64 LDFLAGS: -L${SRCDIR}/../../../third_party/litert/linux_arm64/lib -Wl,-rpath,${SRCDIR}/../../../third_party/litert/linux_arm64/lib
#cgo LDFLAGS: -lLiteRt -ldl
*/
import "C"

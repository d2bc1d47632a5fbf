package litert

// libLiteRt.so is loaded with dlopen at first use, found through the binary's
// run path: the Makefile puts LITERT_DIR's lib folder (and, for an installed
// binary, $ORIGIN/../lib/sightd) first; these defaults let a plain `go build`
// or `go test` find the runtime that `make deps` unpacked.

/*
#cgo linux,amd64 LDFLAGS: -L${SRCDIR}/../../../third_party/litert/linux_amd64/lib -Wl,-rpath,${SRCDIR}/../../../third_party/litert/linux_amd64/lib
#cgo linux,arm64 LDFLAGS: -L${SRCDIR}/../../../third_party/litert/linux_arm64/lib -Wl,-rpath,${SRCDIR}/../../../third_party/litert/linux_arm64/lib
#cgo LDFLAGS: -ldl
*/
import "C"

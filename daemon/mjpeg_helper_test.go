package main

import (
	"fmt"
	"net/http"
	"time"
)

// writeMJPEG writes JPEG parts as an MJPEG camera does (boundary "frame",
// each part with its Content-Length), next giving each JPEG, every apart:
// n parts, or while the client stays when n < 0.
func writeMJPEG(w http.ResponseWriter, r *http.Request, next func() []byte, n int, every time.Duration) {
	for i := 0; n < 0 || i < n; i++ {
		jpg := next()
		if _, err := fmt.Fprintf(w, "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n", len(jpg), jpg); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			return
		case <-time.After(every):
		}
	}
}

package tfl29

import "testing"

// Only 2.9's XNNPACK options layout is written; any other classic runtime
// (a user's TFLITE_DIR) is refused rather than given 2.9's bytes.
func TestXNNPACKLayoutOnlyFor29(t *testing.T) {
	if !xnnpackLayoutKnown(Version()) {
		t.Fatalf("the bundled runtime %q is not 2.9", Version())
	}
	for _, v := range []string{"2.10.0", "2.16.1", "2.20.0", "1.15.0", "2.9", ""} {
		if xnnpackLayoutKnown(v) {
			t.Errorf("layout accepted for %q", v)
		}
	}
}

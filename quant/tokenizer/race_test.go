//go:build race

package tokenizer

// raceEnabled: under the race detector sync.Pool drops items at random, so
// pooled buffers are reallocated.
const raceEnabled = true

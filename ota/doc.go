// Package ota fetches, verifies, stages, smoke-tests, activates and rolls back
// signed model bundles.
package ota

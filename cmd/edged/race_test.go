//go:build race

package main

// raceDetector is true when the tests run with -race, which slows the
// in-test proxy and collector by an order of magnitude.
const raceDetector = true

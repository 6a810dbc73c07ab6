package main

import "runtime/debug"

// gcPercent is lkedge serve's GOGC when the environment sets none. A
// collection at Go's default of 100 lets the heap grow to twice the live
// data first, and the peaks come in bursts: at 50 the peak is lower, for
// more frequent collections of a small live heap (what each costs is in
// docs/benchmarks.md, sixth round).
const gcPercent = 50

// tuneGC sets gcPercent unless GOGC is set (lookup is os.LookupEnv), as
// for any Go program the operator's setting wins.
func tuneGC(lookup func(string) (string, bool)) {
	if _, set := lookup("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
}

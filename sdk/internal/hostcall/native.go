//go:build !wasip1

package hostcall

// Native is the host when the plugin runs as ordinary Go code: the test kit
// sets it for each call.
var Native Host

// Current is the host of the call in progress.
func Current() Host { return Native }

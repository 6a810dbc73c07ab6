// Command noop is the least an SDK plugin can be: its handler returns at
// once, so a call costs only reading and decoding the event, and entering
// and leaving the guest. BenchmarkPlugins measures that floor.
package main

import "github.com/lkedge/lkedge/sdk"

func init() { sdk.Handle(func(*sdk.Event) error { return nil }) }

func main() {}

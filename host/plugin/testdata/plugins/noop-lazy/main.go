// Command noop-lazy is noop with sdk.HandleLazy: a call costs reading the
// event and decoding its top level, and entering and leaving the guest.
package main

import "github.com/lkedge/lkedge/sdk"

func init() { sdk.HandleLazy(func(*sdk.LazyEvent) error { return nil }) }

func main() {}

// Command abiv2 claims a future ABI version; the host must refuse to load it.
package main

//go:wasmexport lkedge_abi_v2
func abi() {}

//go:wasmexport lkedge_on_event
func onEvent(size uint32) int32 { return 0 }

func main() {}

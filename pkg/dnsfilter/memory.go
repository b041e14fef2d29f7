package dnsfilter

import (
	"log/slog"
	"runtime/debug"
	rtmetrics "runtime/metrics"
)

// freeMemoryThreshold: when the heap holds more free memory than this
// (spans the garbage collector emptied and the runtime has not returned
// to the system yet), it is returned at once. After a flood of large
// answers the runtime's background scavenger takes minutes to give back
// what the flood's garbage took; the box's memory should look idle again
// within a minute (issue 12, docs/benchmarks.md).
const freeMemoryThreshold = 32 << 20

// returnFreeMemory gives the heap's free memory back to the system when
// there is much of it. Run checks every 30 s: reading the metric is cheap
// (no stop of the world); FreeOSMemory runs a collection.
func returnFreeMemory(log *slog.Logger) {
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindUint64 {
		return
	}
	if free := s[0].Value.Uint64(); free > freeMemoryThreshold {
		debug.FreeOSMemory()
		log.Debug("free heap memory returned to the system", "bytes", free)
	}
}

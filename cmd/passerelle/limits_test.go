package main

import (
	"log/slog"
	"runtime/debug"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"256MiB": 256 << 20, "1GiB": 1 << 30, "4096": 4096, "64KiB": 64 << 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1MiB", "lots", "0"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

func TestSetMemoryLimitAuto(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	total, err := memTotal()
	if err != nil {
		t.Skip(err)
	}
	if err := setMemoryLimit(slog.New(slog.DiscardHandler), "auto"); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != int64(float64(total)*memoryFraction) {
		t.Errorf("limit %d, want half of MemTotal %d", got, total)
	}
	if err := setMemoryLimit(slog.New(slog.DiscardHandler), "300MiB"); err != nil || debug.SetMemoryLimit(-1) != 300<<20 {
		t.Errorf("300MiB: %v, %d", err, debug.SetMemoryLimit(-1))
	}
}

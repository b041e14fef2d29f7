package supervisor

import (
	"strings"
	"testing"
)

func TestRingKeepsTheTail(t *testing.T) {
	tests := []struct {
		name   string
		size   int
		writes []string
		want   string
	}{
		{"fits", 16, []string{"a\n", "b\n"}, "a\nb\n"},
		{"exactly full", 4, []string{"a\n", "b\n"}, "a\nb\n"},
		{"wraps, drops the partial first line", 8, []string{"one\n", "two\n", "three\n"}, "three\n"},
		{"one write larger than the ring", 6, []string{"0123456789\nab\n"}, "ab\n"},
		{"many small writes", 10, strings.Split(strings.Repeat("x\n", 50), ""), "x\nx\nx\nx\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRing(tt.size)
			total := 0
			for _, w := range tt.writes {
				r.Write([]byte(w))
				total += len(w)
			}
			if got := string(r.Bytes()); got != tt.want {
				t.Errorf("Bytes() = %q, want %q", got, tt.want)
			}
			if r.Total() != int64(total) {
				t.Errorf("Total() = %d, want %d", r.Total(), total)
			}
		})
	}
}

package rtnl

import (
	"errors"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestDumpRetriesOnlyInterruptedDumps(t *testing.T) {
	other := errors.New("permission denied")
	tests := []struct {
		name      string
		errs      []error // one per call; the last repeats
		wantCalls int
		wantErr   error
	}{
		{"first answer kept", []error{nil}, 1, nil},
		{"interrupted then whole", []error{netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, nil}, 3, nil},
		{"other error not retried", []error{other}, 1, other},
		{"always interrupted gives up after ten", []error{netlink.ErrDumpInterrupted}, 10, netlink.ErrDumpInterrupted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			v, err := Dump(func() (int, error) {
				e := tt.errs[min(calls, len(tt.errs)-1)]
				calls++
				return calls, e
			})
			if calls != tt.wantCalls || !errors.Is(err, tt.wantErr) || v != calls {
				t.Errorf("calls %d err %v v %d; want calls %d err %v", calls, err, v, tt.wantCalls, tt.wantErr)
			}
		})
	}
}

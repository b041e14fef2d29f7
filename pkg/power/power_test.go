package power

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type recorder struct {
	calls   []string
	stopErr error
}

func (r *recorder) Stop(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		r.calls = append(r.calls, "stop without deadline")
	} else {
		r.calls = append(r.calls, "stop")
	}
	return r.stopErr
}

func (r *recorder) KillAll(context.Context, time.Duration) error {
	r.calls = append(r.calls, "killall")
	return nil
}
func (r *recorder) Sync() { r.calls = append(r.calls, "sync") }
func (r *recorder) Unmount(dir string) error {
	r.calls = append(r.calls, "unmount "+dir)
	return nil
}
func (r *recorder) Reboot(a Action) error {
	r.calls = append(r.calls, a.String())
	return nil
}

func TestShutdownOrder(t *testing.T) {
	tests := []struct {
		action Action
		want   string
	}{
		{Reboot, "stop, disarm, killall, sync, unmount /perm, sync, reboot"},
		{PowerOff, "stop, disarm, killall, sync, unmount /perm, sync, power off"},
		{Exit, "stop, disarm"},
	}
	for _, tt := range tests {
		t.Run(tt.action.String(), func(t *testing.T) {
			r := &recorder{}
			p := Plan{
				Action:   tt.action,
				Deadline: time.Second,
				Before:   []func() error{func() error { r.calls = append(r.calls, "disarm"); return nil }},
				Unmount:  []string{"/perm"},
			}
			if err := Shutdown(context.Background(), slog.New(slog.DiscardHandler), r, r, p); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(r.calls, ", "); got != tt.want {
				t.Errorf("steps: %s\nwant:  %s", got, tt.want)
			}
		})
	}
}

func TestShutdownRebootsEvenWhenServicesFailToStop(t *testing.T) {
	r := &recorder{stopErr: errors.New("service dns: did not stop")}
	err := Shutdown(context.Background(), slog.New(slog.DiscardHandler), r, r, Plan{Action: Reboot, Deadline: time.Second})
	if err != nil {
		t.Fatalf("Shutdown = %v, want the reboot to go ahead", err)
	}
	if last := r.calls[len(r.calls)-1]; last != "reboot" {
		t.Errorf("last step %q, want reboot", last)
	}
}

func TestLinuxRefusesOutsidePID1(t *testing.T) {
	if err := (Linux{}).Reboot(Reboot); !errors.Is(err, errNotInit) {
		t.Errorf("Reboot outside PID 1 = %v", err)
	}
	if err := (Linux{}).KillAll(context.Background(), 0); !errors.Is(err, errNotInit) {
		t.Errorf("KillAll outside PID 1 = %v", err)
	}
}

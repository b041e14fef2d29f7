package status

import (
	"strings"
	"testing"
	"time"
)

// updatedSource is a Source that knows the last firmware update.
type updatedSource struct {
	*fakeSource
	last LastUpdate
}

func (s updatedSource) LastUpdate() (LastUpdate, bool) { return s.last, s.last.Outcome != "" }

// TestScreenLastUpdate: the first screen shows the last firmware update
// after the firmware line: installed (OK), refused (neutral: nothing
// changed), failed (a warning, with what to do); nothing without one.
func TestScreenLastUpdate(t *testing.T) {
	at := time.Date(2026, 12, 5, 10, 40, 0, 0, time.Local)
	for _, c := range []struct {
		last  LastUpdate
		level Level
		text  string
	}{
		{LastUpdate{At: at, Outcome: "installed", Version: "0.2.0", Slot: "b"}, OK, "05/12/2026 10:40: version 0.2.0 installed in slot b, tried at the next boot"},
		{LastUpdate{At: at, Outcome: "rejected", Version: "0.2.0", Reason: "wrong-board", Detail: "the image is for board rpi4"}, Neutral, "update 0.2.0 refused (wrong-board): the image is for board rpi4"},
		{LastUpdate{At: at, Outcome: "failed", Version: "0.2.0", Reason: "truncated", Detail: "the stream ended"}, Warn, "failed (truncated): the stream ended; the running firmware is unchanged"},
	} {
		sc := BuildScreen(updatedSource{&fakeSource{cfg: testConfig(t, "")}, c.last}, "en", time.Now())
		l := sc.Lines[len(sc.Lines)-1]
		if l.Key != "update" || l.Level != c.level || !strings.Contains(l.Text, c.text) || (c.level == Warn) != (l.Advice != "") {
			t.Errorf("%s: line %+v", c.last.Outcome, l)
		}
	}
	sc := BuildScreen(updatedSource{fakeSource: &fakeSource{cfg: testConfig(t, "")}}, "fr", time.Now())
	if l := sc.Lines[len(sc.Lines)-1]; l.Key != "firmware" {
		t.Errorf("a line without any update: %+v", l)
	}
}

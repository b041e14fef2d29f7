package lab

import (
	"os"
	"strings"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and parentheses must not shift fields.
	line := "1234 (we ird) (x) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100 " +
		strings.Repeat("0 ", 30)
	st, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if st.state != 'S' || st.startTime != 98765 {
		t.Errorf("parseProcStat = %+v, want state S start 98765", st)
	}
	if _, err := parseProcStat("1234 (truncated) S 1"); err == nil {
		t.Error("truncated stat line accepted")
	}
}

func TestProcessAlive(t *testing.T) {
	self, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !processAlive(os.Getpid(), self.startTime) {
		t.Error("own process reported dead")
	}
	if processAlive(os.Getpid(), self.startTime+1) {
		t.Error("recycled PID (different start time) reported alive")
	}
	if processAlive(0, 0) || processAlive(-1, 0) {
		t.Error("invalid PID reported alive")
	}
}

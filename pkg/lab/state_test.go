package lab

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func testState(id string) runState {
	return runState{
		Version:    stateVersion,
		ID:         id,
		PID:        4242,
		PIDStart:   123456,
		Started:    time.Date(2025, 9, 1, 8, 0, 0, 0, time.UTC),
		Namespaces: map[string]string{"box": "pl" + id + "-box", "isp:renater": "pl" + id + "-i-0"},
	}
}

func TestStateRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state") // created on demand
	want := testState("c0ffee")
	if err := createState(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := readState(statePath(dir, "c0ffee"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Errorf("state dir holds %d entries, want only the state file (no temporary file left)", len(ents))
	}

	ok, err := removeState(dir, "c0ffee")
	if err != nil || !ok {
		t.Fatalf("removeState = %v, %v", ok, err)
	}
	if ok, err := removeState(dir, "c0ffee"); err != nil || ok {
		t.Fatalf("second removeState = %v, %v; want false, nil", ok, err)
	}
}

func TestCreateStateIsExclusive(t *testing.T) {
	dir := t.TempDir()
	if err := createState(dir, testState("c0ffee")); err != nil {
		t.Fatal(err)
	}
	other := testState("c0ffee")
	other.PID = 99
	if err := createState(dir, other); !errors.Is(err, errIDTaken) {
		t.Fatalf("second createState = %v, want errIDTaken", err)
	}
	got, err := readState(statePath(dir, "c0ffee"))
	if err != nil {
		t.Fatal(err)
	}
	if got.PID != 4242 {
		t.Errorf("state file overwritten by the losing run (PID %d)", got.PID)
	}
}

func TestReadStateRejectsMismatchedID(t *testing.T) {
	dir := t.TempDir()
	if err := createState(dir, testState("c0ffee")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(statePath(dir, "c0ffee"), statePath(dir, "bad000")); err != nil {
		t.Fatal(err)
	}
	if _, err := readState(statePath(dir, "bad000")); err == nil {
		t.Fatal("readState accepted a file whose name and content disagree")
	}
	if err := os.WriteFile(statePath(dir, "0000ff"), []byte("{garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readState(statePath(dir, "0000ff")); err == nil {
		t.Fatal("readState accepted garbage")
	}
}

func TestListStateDir(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"abc123.json", ".abc124.json.tmp.77", "README", "abc12.json", ".x.json.tmp.1"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := listStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []stateEntry{{id: "abc124", tmp: true, pid: 77}, {id: "abc123"}} // directory order
	if !reflect.DeepEqual(got, want) {
		t.Errorf("listStateDir = %+v, want %+v", got, want)
	}
	if got, err := listStateDir(filepath.Join(dir, "missing")); err != nil || got != nil {
		t.Errorf("missing dir: %v, %v", got, err)
	}
}

package update

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"passerelle/pkg/atomicfile"
)

// FileSlots are A/B slots kept as two files of a fixed size in a
// directory, DIR/a.img and DIR/b.img, with DIR/slots.json saying which
// runs and which is to be tried once: the slots of the lab and of
// development runs (--update-slots), and of the tests. Boards have block
// devices and a bootloader; their Target is the A/B slots package's.
// Nothing boots from FileSlots: TryOnce only records the request, as a
// bootloader's environment would.
type FileSlots struct {
	Dir string
}

// FileSlotState is DIR/slots.json.
type FileSlotState struct {
	Running string `json:"running"`       // a or b
	Try     string `json:"try,omitempty"` // the slot to try once at the next start
}

// CreateFileSlots makes DIR with two slot files of size bytes (zeros),
// slot a running; existing slot files are kept.
func CreateFileSlots(dir string, size int64) (FileSlots, error) {
	s := FileSlots{Dir: dir}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return s, err
	}
	for _, name := range []string{"a", "b"} {
		f, err := os.OpenFile(s.device(name), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return s, err
		}
		st, err := f.Stat()
		if err == nil && st.Size() != size {
			err = f.Truncate(size)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return s, fmt.Errorf("slot %s: %w", name, err)
		}
	}
	if _, err := s.State(); errors.Is(err, fs.ErrNotExist) {
		return s, s.setState(FileSlotState{Running: "a"})
	}
	return s, nil
}

func (s FileSlots) device(slot string) string { return filepath.Join(s.Dir, slot+".img") }

// State reads DIR/slots.json.
func (s FileSlots) State() (FileSlotState, error) {
	var st FileSlotState
	data, err := os.ReadFile(filepath.Join(s.Dir, "slots.json"))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("%s: %w", filepath.Join(s.Dir, "slots.json"), err)
	}
	if st.Running != "a" && st.Running != "b" {
		return st, fmt.Errorf("%s: running slot %q, not a or b", filepath.Join(s.Dir, "slots.json"), st.Running)
	}
	return st, nil
}

func (s FileSlots) setState(st FileSlotState) error {
	data, _ := json.Marshal(st)
	return atomicfile.Replace(filepath.Join(s.Dir, "slots.json"), data, 0o644)
}

// Inactive is the slot that does not run, its file and its size.
func (s FileSlots) Inactive() (string, string, int64, error) {
	st, err := s.State()
	if err != nil {
		return "", "", 0, err
	}
	slot := "b"
	if st.Running == "b" {
		slot = "a"
	}
	fi, err := os.Stat(s.device(slot))
	if err != nil {
		return "", "", 0, err
	}
	return slot, s.device(slot), fi.Size(), nil
}

// TryOnce records that slot is to be tried at the next start.
func (s FileSlots) TryOnce(slot string) error {
	st, err := s.State()
	if err != nil {
		return err
	}
	if slot == st.Running {
		return fmt.Errorf("slot %s is the running one", slot)
	}
	st.Try = slot
	return s.setState(st)
}

// Discard forgets a pending try of slot.
func (s FileSlots) Discard(slot string) error {
	st, err := s.State()
	if err != nil {
		return err
	}
	if st.Try != slot {
		return nil
	}
	st.Try = ""
	return s.setState(st)
}

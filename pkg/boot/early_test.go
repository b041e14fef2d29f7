package boot

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"passerelle/board"
)

// The Debian 6.1 kernel's real case: nf_tables needs libcrc32c, whose
// init fails unless a crc32c implementation is loaded first, which only
// modules.softdep says ("pre: crc32c", an alias of crc32c_generic).
func TestModuleLoadOrderFollowsSoftdepsAndAliases(t *testing.T) {
	dep := `kernel/net/netfilter/nf_tables.ko: kernel/net/netfilter/nfnetlink.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/nfnetlink.ko:
kernel/lib/libcrc32c.ko:
kernel/crypto/crc32c_generic.ko:
kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/lib/crc16.ko
kernel/fs/jbd2/jbd2.ko:
kernel/lib/crc16.ko:
kernel/drivers/block/virtio_blk.ko:
`
	ix, err := ParseModules(strings.NewReader(dep), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.ParseSoftdeps(strings.NewReader("# Soft dependencies\nsoftdep libcrc32c pre: crc32c\nsoftdep ext4 pre: crc32c post: unknown_thing\n")); err != nil {
		t.Fatal(err)
	}
	if err := ix.ParseAliases(strings.NewReader("alias crypto-crc32c crc32c_generic\nalias crc32c crc32c_generic\nalias virtio:d00000002v* virtio_blk\n")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ names, want string }{
		{"nf_tables", "crc32c_generic libcrc32c nfnetlink nf_tables"},
		{"ext4 nf_tables", "crc32c_generic crc16 jbd2 ext4 libcrc32c nfnetlink nf_tables"},
		{"virtio:d00000002v00001AF4", "virtio_blk"},
		{"crypto-crc32c", "crc32c_generic"},
	} {
		order, err := ix.LoadOrder(strings.Fields(tt.names))
		if err != nil {
			t.Errorf("LoadOrder(%s): %v", tt.names, err)
		}
		var got []string
		for _, p := range order {
			got = append(got, ModuleName(p))
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("LoadOrder(%s) = %s, want %s", tt.names, strings.Join(got, " "), tt.want)
		}
	}
	// As modprobe does: words before pre:/post: are ignored (Debian
	// 6.1's modules.softdep has "softdep cifs gcm"), a line that is not
	// a softdep is an error.
	if err := ix.ParseSoftdeps(strings.NewReader("softdep cifs gcm\n")); err != nil || len(ix.pre["cifs"])+len(ix.post["cifs"]) != 0 {
		t.Errorf("softdep without pre:/post:: %v, %v %v", err, ix.pre["cifs"], ix.post["cifs"])
	}
	if err := ix.ParseSoftdeps(strings.NewReader("alias x y\n")); err == nil {
		t.Error("a line that is not a softdep accepted")
	}
}

func TestPlanRenames(t *testing.T) {
	ifaces := []board.Interface{
		{Name: "wan0", Device: "*/0000:00:02.0/virtio*"},
		{Name: "lan0", Device: "*/0000:00:03.0/virtio*"},
		{Name: "lan1", MAC: "DC:A6:32:*"},
		{Name: "wwan0"}, // hotplug, no pattern: left alone
	}
	pci := "platform/4010000000.pcie/pci0000:00/"
	links := []Link{
		{Name: "lo"},
		{Name: "eth1", Device: pci + "0000:00:03.0/virtio2", MAC: "52:54:00:00:00:02"},
		{Name: "eth0", Device: pci + "0000:00:02.0/virtio1", MAC: "52:54:00:00:00:01"},
		{Name: "eth2", Device: "platform/usb/1-1", MAC: "dc:a6:32:01:02:03"},
	}
	got, err := PlanRenames(ifaces, links)
	if err != nil {
		t.Fatal(err)
	}
	want := []Rename{{"eth0", "wan0"}, {"eth1", "lan0"}, {"eth2", "lan1"}}
	if len(got) != len(want) {
		t.Fatalf("renames %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("renames %v, want %v", got, want)
		}
	}
	// Already named: nothing to do. A board name held by a port that
	// does not match is a wiring error, not something to hide.
	links[1].Name, links[2].Name = "lan0", "wan0"
	links[2].Device = "platform/other"
	got, err = PlanRenames(ifaces[:2], links)
	if err == nil || !strings.Contains(err.Error(), "wan0 is taken") || len(got) != 0 {
		t.Errorf("renames %v, err %v; want none and an error about wan0", got, err)
	}
}

func TestPowerKey(t *testing.T) {
	// QEMU virt's gpio-keys: KEY_POWER (116) only; a keyboard's bitmap.
	if !hasKey("100000 0 0", keyPower) && !hasKey("10000000000000 0", keyPower) {
		t.Error("KEY_POWER not found in a gpio-keys bitmap")
	}
	if hasKey("0", keyPower) || hasKey("", keyPower) {
		t.Error("KEY_POWER found in an empty bitmap")
	}
	var stream bytes.Buffer
	ev := func(typ, code uint16, val int32) {
		stream.Write(make([]byte, 16)) // struct timeval on 64-bit
		binary.Write(&stream, binary.NativeEndian, typ)
		binary.Write(&stream, binary.NativeEndian, code)
		binary.Write(&stream, binary.NativeEndian, val)
	}
	ev(evKey, 30, 1)       // KEY_A
	ev(evKey, keyPower, 1) // press
	ev(0, 0, 0)            // SYN
	ev(evKey, keyPower, 0) // release
	presses := 0
	readPowerKey(slog.New(slog.DiscardHandler), io.NopCloser(&stream), func() { presses++ })
	if presses != 1 {
		t.Errorf("%d presses, want 1", presses)
	}
}

func TestBootCount(t *testing.T) {
	dir := t.TempDir()
	for want := 1; want <= 3; want++ {
		n, err := countBoot(dir)
		if err != nil || n != want {
			t.Fatalf("countBoot = %d, %v; want %d", n, err, want)
		}
	}
	os.WriteFile(filepath.Join(dir, bootCountFile), []byte("garbage"), 0o644)
	if n, _ := countBoot(dir); n != 1 {
		t.Errorf("after a corrupt count: %d, want 1", n)
	}
}

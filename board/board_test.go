package board

import "testing"

func TestEveryBoardLoads(t *testing.T) {
	names := Names()
	if len(names) < 3 {
		t.Fatalf("Names() = %v, want at least lab, nanopi-r5s, rpi4", names)
	}
	for _, n := range names {
		b, err := Lookup(n)
		if err != nil {
			t.Errorf("Lookup(%q): %v", n, err)
			continue
		}
		if len(b.Interfaces) == 0 {
			t.Errorf("board %s has no interfaces", n)
		}
		seen := map[string]bool{}
		for _, i := range b.Interfaces {
			if seen[i.Name] || len(i.Name) > 15 {
				t.Errorf("board %s: interface %q duplicated or longer than IFNAMSIZ", n, i.Name)
			}
			seen[i.Name] = true
			if i.Role != "wan" && i.Role != "lan" {
				t.Errorf("board %s: interface %s has role %q, want wan or lan", n, i.Name, i.Role)
			}
		}
	}
}

func TestLookupUnknownBoard(t *testing.T) {
	if _, err := Lookup("toaster"); err == nil {
		t.Fatal("Lookup(toaster) succeeded, want an error")
	}
}

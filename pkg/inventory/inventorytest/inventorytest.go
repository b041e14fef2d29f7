// Package inventorytest generates synthetic NOC inventories for tests and
// benchmarks: deterministic, every school valid for the NOC collège
// template (configs/noc/college.yaml.tmpl), with no two schools sharing a
// UAI or a subnet.
package inventorytest

import (
	"encoding/csv"
	"fmt"
	"io"
)

// Columns returns the columns Generate writes, those of
// configs/noc/schools.csv.
func Columns() []string {
	return []string{"uai", "name", "academy", "renater_address", "renater_gateway", "peda_subnet", "admin_subnet", "guest_subnet"}
}

// MaxSchools is how many schools fit the address plan below: one /21 of
// 10.0.0.0/8 each.
const MaxSchools = 8192

// Generate writes an inventory of n schools. School i gets UAI 033dddd plus
// its check letter (dddd = i), the /21 block 10.0.0.0 + i*2048 split into a
// /22 for the pedagogical zone and two /24s, and the /30 100.64.0.0 + i*4
// (shared address space) as its Renater link. Names carry an accent, a
// comma, an apostrophe and a colon, to exercise quoting end to end.
func Generate(w io.Writer, n int) error {
	if n < 0 || n > MaxSchools {
		return fmt.Errorf("inventorytest: %d schools: the address plan holds 0 to %d", n, MaxSchools)
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(Columns()); err != nil {
		return fmt.Errorf("inventorytest: %w", err)
	}
	for i := range n {
		block := uint32(10)<<24 | uint32(i)<<11
		link := uint32(100)<<24 | uint32(64)<<16 | uint32(i)<<2
		code := fmt.Sprintf("033%04d", i)
		rec := []string{
			code + string(CheckLetter(code)),
			fmt.Sprintf("Collège n°%d, site d'Aquitaine: bâtiment %c", i, 'A'+rune(i%26)),
			"bordeaux",
			addr(link+2) + "/30",
			addr(link + 1),
			addr(block) + "/22",
			addr(block+4<<8) + "/24",
			addr(block+5<<8) + "/24",
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("inventorytest: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("inventorytest: %w", err)
	}
	return nil
}

// CheckLetter is the check letter of a seven-digit UAI: the number modulo
// 23, as a letter of the alphabet without I, O and Q.
func CheckLetter(digits string) byte {
	const letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
	n := 0
	for _, d := range digits {
		n = n*10 + int(d-'0')
	}
	return letters[n%23]
}

func addr(v uint32) string {
	return fmt.Sprintf("%d.%d.%d.%d", v>>24, v>>16&0xff, v>>8&0xff, v&0xff)
}

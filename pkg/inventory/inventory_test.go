package inventory

import (
	"strings"
	"testing"
)

func TestParseInventoryHeaderProblems(t *testing.T) {
	tests := []struct {
		name string
		csv  string
		want []string // substrings of the error
	}{
		{"empty file", "", []string{"schools.csv: empty inventory"}},
		{"only comments", "# nothing yet\n", []string{"empty inventory"}},
		{"no uai column", "name,academy\nX,paris\n", []string{`schools.csv:1: no "uai" column`}},
		{"duplicate column", "uai,name,name\n", []string{`schools.csv:1: column 3 "name" is also column 2`}},
		{"column unusable in a template", "uai,peda-subnet\n", []string{`column 2 "peda-subnet": a column name has letters, digits and _ only`}},
		{"unnamed column", "uai,,name\n", []string{"column 2 has no name"}},
		{"header after comments keeps its line", "# inventory\n# of schools\nname\n", []string{`schools.csv:3: no "uai" column`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseInventory("schools.csv", []byte(tt.csv))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseInventoryRows(t *testing.T) {
	type row struct {
		line int
		uai  string
		err  string // substring of the row's only error; empty for a good row
	}
	tests := []struct {
		name string
		csv  string
		want []row
	}{
		{
			name: "values are trimmed and comments skipped",
			csv:  "uai, name\n# a comment\n 0330021U , Collège Jean Moulin \n",
			want: []row{{line: 3, uai: "0330021U"}},
		},
		{
			name: "semicolons from a French spreadsheet",
			csv:  "uai;name\n0330021U;Collège Jean Moulin, Bordeaux\n",
			want: []row{{line: 2, uai: "0330021U"}},
		},
		{
			name: "byte order mark of CSV UTF-8 exports",
			csv:  "\xEF\xBB\xBFuai,name\n0330021U,X\n",
			want: []row{{line: 2, uai: "0330021U"}},
		},
		{
			name: "quoted field spanning lines keeps the row's first line",
			csv:  "uai,name\n0330021U,\"a\nb\"\n0330022V,Y\n",
			want: []row{{line: 2, uai: "0330021U", err: "line break"}, {line: 4, uai: "0330022V"}},
		},
		{
			name: "wrong field count is one bad row",
			csv:  "uai,name,academy\n0330021U,X,bordeaux\n0330022V,Y\n0330023W,Z,bordeaux,extra\n0330024X,T,bordeaux\n",
			want: []row{
				{line: 2, uai: "0330021U"},
				{line: 3, uai: "0330022V", err: "2 fields, but the header has 3 columns"},
				{line: 4, uai: "0330023W", err: "4 fields, but the header has 3 columns"},
				{line: 5, uai: "0330024X"},
			},
		},
		{
			name: "bad quote costs one row",
			csv:  "uai,name\n0330021U,Collège \"Jean\" Moulin\n0330022V,Y\n",
			want: []row{{line: 2, err: `bare " in non-quoted-field`}, {line: 3, uai: "0330022V"}},
		},
		{
			name: "empty uai",
			csv:  "uai,name\n,X\n",
			want: []row{{line: 2, err: "column uai is empty"}},
		},
		{
			name: "Latin-1 export",
			csv:  "uai,name\n0330021U,Coll\xe8ge\n",
			want: []row{{line: 2, uai: "0330021U", err: "column name is not UTF-8"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := ParseInventory("schools.csv", []byte(tt.csv))
			if err != nil {
				t.Fatal(err)
			}
			if len(inv.Rows) != len(tt.want) {
				t.Fatalf("got %d rows, want %d: %+v", len(inv.Rows), len(tt.want), inv.Rows)
			}
			for i, w := range tt.want {
				got := inv.Rows[i]
				if got.Line != w.line || got.UAI != w.uai {
					t.Errorf("row %d: line %d uai %q, want line %d uai %q", i, got.Line, got.UAI, w.line, w.uai)
				}
				switch {
				case w.err == "" && len(got.Errs) > 0:
					t.Errorf("row %d: unexpected errors %v", i, got.Errs)
				case w.err == "" && got.Values[UAIColumn] != w.uai:
					t.Errorf("row %d: values %v", i, got.Values)
				case w.err != "" && (len(got.Errs) != 1 || !strings.Contains(got.Errs[0].Error(), w.err)):
					t.Errorf("row %d: errors %v, want one containing %q", i, got.Errs, w.err)
				case w.err != "" && got.Values != nil:
					t.Errorf("row %d: a bad row has values %v", i, got.Values)
				}
			}
		})
	}
}

func TestParseInventoryTrimsValues(t *testing.T) {
	inv, err := ParseInventory("schools.csv", []byte("uai,name\n0330021U,  Collège Jean Moulin\t\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.Rows[0].Values["name"]; got != "Collège Jean Moulin" {
		t.Errorf("name = %q", got)
	}
}

// Package inventory renders one box configuration per school from the
// academy NOC's inventory: a CSV file with one row per school, whose columns
// feed a text/template YAML document. Every rendered document is validated
// with the configuration model before anything is written, and a bad row is
// reported with its line number without stopping the other schools.
//
// The package separates the pure part (ParseInventory, ParseTemplate,
// Render: bytes in, []Result out) from WriteResults, which puts the good
// documents on disk, so that the rendering rules are testable without files.
package inventory

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"passerelle/pkg/config"
)

// UAIColumn is the column every inventory must have: the school code, which
// also names the rendered file.
const UAIColumn = "uai"

// columnRE is what a column name must look like to be usable as {{.name}}
// in a template; other names would need {{index . "name"}}, which nobody
// writes on the first try.
var columnRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Inventory is a parsed NOC inventory.
type Inventory struct {
	Name    string   // file name used in messages, e.g. schools.csv
	Columns []string // header, in file order
	Rows    []Row
	comma   rune // the separator: , or ;
}

// Row is one school of the inventory.
type Row struct {
	Line   int               // line where the row starts; the header is usually line 1
	UAI    string            // the uai column, when the row has one
	Values map[string]string // column -> value; nil when Errs is set
	Errs   []error           // what makes the row unusable (bad CSV, wrong field count, ...)
}

// ParseInventory reads an inventory: a header row naming the columns, then
// one row per school. Lines starting with # are comments, values are
// trimmed, and a file using ; as separator (what French spreadsheets
// export) is read as such. Problems with the header are returned as the
// error, since no row can be read without it; problems with one row are
// left in that row's Errs so the other schools still render.
func ParseInventory(name string, data []byte) (*Inventory, error) {
	// Spreadsheets save "CSV UTF-8" with a byte order mark.
	data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))
	r := csv.NewReader(bytes.NewReader(data))
	r.Comma = separator(data)
	r.Comment = '#'
	r.FieldsPerRecord = -1 // field counts are checked per row, to report the line and go on

	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: empty inventory: expected a header row naming the columns, with %s among them", name, UAIColumn)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", name, err)
	}
	headerLine, _ := r.FieldPos(0)
	inv := &Inventory{Name: name, comma: r.Comma}
	if err := inv.setColumns(header, headerLine); err != nil {
		return nil, err
	}

	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			// The reader resumes at the next line, so one bad quote costs one
			// row, unless it is never closed and swallows the rest.
			msg := fmt.Sprintf("bad CSV at column %d: %v", pe.Column, pe.Err)
			if pe.Line != pe.StartLine {
				msg += fmt.Sprintf(" (the row runs on to line %d: check its quotes)", pe.Line)
			}
			inv.Rows = append(inv.Rows, Row{Line: pe.StartLine, Errs: []error{errors.New(msg)}})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		line, _ := r.FieldPos(0)
		inv.Rows = append(inv.Rows, inv.row(line, rec))
	}
	return inv, nil
}

// separator picks ; when the header (the first line that is neither blank
// nor a comment) has more of them than commas.
func separator(data []byte) rune {
	for line := range bytes.Lines(data) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if bytes.Count(line, []byte(";")) > bytes.Count(line, []byte(",")) {
			return ';'
		}
		break
	}
	return ','
}

func (inv *Inventory) setColumns(header []string, line int) error {
	var problems []error
	seen := map[string]int{}
	for i, c := range header {
		c = strings.TrimSpace(c)
		switch {
		case c == "":
			problems = append(problems, fmt.Errorf("%s:%d: column %d has no name", inv.Name, line, i+1))
		case !columnRE.MatchString(c):
			problems = append(problems, fmt.Errorf("%s:%d: column %d %q: a column name has letters, digits and _ only, e.g. peda_subnet", inv.Name, line, i+1, c))
		}
		if j, dup := seen[c]; dup && c != "" {
			problems = append(problems, fmt.Errorf("%s:%d: column %d %q is also column %d", inv.Name, line, i+1, c, j))
		}
		seen[c] = i + 1
		inv.Columns = append(inv.Columns, c)
	}
	if _, ok := seen[UAIColumn]; !ok {
		problems = append(problems, fmt.Errorf("%s:%d: no %q column: every school needs its UAI, which also names its file (columns: %s)", inv.Name, line, UAIColumn, strings.Join(inv.Columns, ", ")))
	}
	return errors.Join(problems...)
}

func (inv *Inventory) row(line int, rec []string) Row {
	row := Row{Line: line}
	for i, c := range inv.Columns {
		if c == UAIColumn && i < len(rec) {
			row.UAI = strings.TrimSpace(rec[i])
		}
	}
	if len(rec) != len(inv.Columns) {
		row.Errs = []error{fmt.Errorf("%d fields, but the header has %d columns%s", len(rec), len(inv.Columns), inv.commaHint(rec))}
		return row
	}
	values := make(map[string]string, len(rec))
	for i, v := range rec {
		v = strings.TrimSpace(v)
		col := inv.Columns[i]
		switch {
		case !utf8.ValidString(v):
			row.Errs = append(row.Errs, fmt.Errorf("column %s is not UTF-8: export the inventory as \"CSV UTF-8\"", col))
		case strings.IndexFunc(v, unicode.IsControl) >= 0:
			// No configuration value spans lines; a line break here would
			// let a cell write YAML keys of its own.
			row.Errs = append(row.Errs, fmt.Errorf("column %s contains a line break or control character", col))
		}
		values[col] = v
	}
	if row.UAI == "" {
		row.Errs = append(row.Errs, fmt.Errorf("column %s is empty", UAIColumn))
	} else if err := config.CheckUAI(row.UAI); err != nil {
		// Checked here rather than in the rendered config: the UAI names
		// the output file, and a wrong letter is a typo in the inventory.
		row.Errs = append(row.Errs, fmt.Errorf("column %s: %v", UAIColumn, err))
	}
	if len(row.Errs) > 0 {
		return row
	}
	row.Values = values
	return row
}

// commaHint explains a row with more fields than columns when a value
// holding a comma was not quoted, as a school name often does ("Collège
// Les Eyquems, Mérignac"): it names the column and shows the value quoted.
func (inv *Inventory) commaHint(rec []string) string {
	extra := len(rec) - len(inv.Columns)
	if inv.comma != ',' || extra <= 0 {
		return ""
	}
	// The value that was split goes on after a comma followed by a
	// space; with none, the hint cannot say which one it is.
	for i := 1; i+extra <= len(rec) && i <= len(inv.Columns); i++ {
		if !strings.HasPrefix(rec[i], " ") {
			continue
		}
		value := strings.TrimSpace(strings.Join(rec[i-1:i+extra], ","))
		return fmt.Sprintf(": does column %s hold an unquoted comma? Write it in double quotes: \"%s\"", inv.Columns[i-1], strings.ReplaceAll(value, `"`, `""`))
	}
	return ": a value holding a comma must be written in double quotes"
}

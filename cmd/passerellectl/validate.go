package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"

	"passerelle/pkg/config"
)

const validateUsage = `usage: passerellectl validate [--json] FILE...

Checks configuration files and prints every problem of every file as
FILE:LINE:COL: field: message, then a summary, on stderr. --json prints
one JSON document on stdout instead. Exit status: 0 if every file is
valid, 1 if any is not, 2 on usage errors.
`

// validateReport is the outcome of validate, as --json prints it.
type validateReport struct {
	Files   []validateFile `json:"files"`
	Checked int            `json:"checked"`
	Invalid int            `json:"invalid"`
}

type validateFile struct {
	File     string            `json:"file"`
	Valid    bool              `json:"valid"`
	Problems []validateProblem `json:"problems"`
}

type validateProblem struct {
	Line    int    `json:"line,omitempty"` // 0: the file as a whole
	Col     int    `json:"col,omitempty"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
	Text    string `json:"text"` // the line the text output prints
}

// cmdValidate checks configuration files and prints every problem of every
// file, so a technician fixes a whole batch in one round.
func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("validate", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() { fmt.Fprint(stderr, validateUsage) }
	asJSON := fset.Bool("json", false, "print the outcome as JSON on stdout")
	if err := fset.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fset.NArg() == 0 {
		fset.Usage()
		return 2
	}
	rep := validateReport{Files: []validateFile{}}
	for _, path := range fset.Args() {
		rep.Checked++
		f := validateFile{File: path, Valid: true, Problems: []validateProblem{}}
		if _, err := config.Load(path); err != nil {
			f.Valid = false
			rep.Invalid++
			var list config.ErrorList
			var pathErr *fs.PathError
			switch {
			case errors.As(err, &list):
				for _, e := range list {
					f.Problems = append(f.Problems, validateProblem{Line: e.Pos.Line, Col: e.Pos.Col, Path: e.Path, Message: e.Msg, Text: e.Error()})
				}
			case errors.As(err, &pathErr):
				// The path is printed first already.
				f.Problems = append(f.Problems, validateProblem{Message: pathErr.Err.Error(), Text: fmt.Sprintf("%s: %v", path, pathErr.Err)})
			default:
				f.Problems = append(f.Problems, validateProblem{Message: err.Error(), Text: fmt.Sprintf("%s: %v", path, err)})
			}
		}
		rep.Files = append(rep.Files, f)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "passerellectl validate: %v\n", err)
			return 1
		}
	} else {
		for _, f := range rep.Files {
			for _, p := range f.Problems {
				fmt.Fprintln(stderr, p.Text) // FILE:LINE:COL: path: message
			}
		}
		fmt.Fprintf(stderr, "%d file(s) checked, %d invalid\n", rep.Checked, rep.Invalid)
	}
	if rep.Invalid > 0 {
		return 1
	}
	return 0
}

package config

import (
	"fmt"
	"sort"
	"strings"
)

// Pos is a place in a configuration file. Line and Col start at 1; zero
// means the place is unknown (a config built in code, not read from a file).
type Pos struct {
	Line, Col int
}

// Error is one problem found in a configuration: where it is, which field,
// and what was expected.
type Error struct {
	File string // file name as given by the caller; may be empty
	Pos  Pos
	Path string // field path such as "zones[1].subnet"; empty for the document
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Pos.Line > 0 {
		fmt.Fprintf(&b, "%d:%d:", e.Pos.Line, e.Pos.Col)
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList holds every problem of one document, so that an operator fixes
// them all in one round instead of one per run.
type ErrorList []*Error

func (l ErrorList) Error() string {
	switch len(l) {
	case 0:
		return "no errors"
	case 1:
		return l[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d errors:", len(l))
	for _, e := range l {
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	return b.String()
}

// sort orders errors by position, then path, so output is stable and reads
// top to bottom like the file.
func (l ErrorList) sort() {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line < b.Pos.Line
		}
		if a.Pos.Col != b.Pos.Col {
			return a.Pos.Col < b.Pos.Col
		}
		return a.Path < b.Path
	})
}

// errs collects errors with their paths while decoding or validating.
type errs struct {
	list ErrorList
}

func (c *errs) add(pos Pos, path, format string, args ...any) {
	c.list = append(c.list, &Error{Pos: pos, Path: path, Msg: fmt.Sprintf(format, args...)})
}

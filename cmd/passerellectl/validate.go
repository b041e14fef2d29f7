package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"passerelle/pkg/config"
)

// cmdValidate checks configuration files and prints every problem of every
// file, so a technician fixes a whole batch in one round.
func cmdValidate(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "usage: passerellectl validate FILE...\n")
		return 2
	}
	invalid := 0
	for _, path := range args {
		_, err := config.Load(path)
		if err == nil {
			continue
		}
		invalid++
		var list config.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				fmt.Fprintln(stderr, e) // FILE:LINE:COL: path: message
			}
			continue
		}
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			err = pathErr.Err // the path is printed first already
		}
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
	}
	fmt.Fprintf(stderr, "%d file(s) checked, %d invalid\n", len(args), invalid)
	if invalid > 0 {
		return 1
	}
	return 0
}

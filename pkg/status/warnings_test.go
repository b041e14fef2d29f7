package status

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// warningKinds finds every health warning kind the code base can raise
// (the part of a code before ':'), by reading the source: the second
// argument of every Raise call, followed through the names, functions
// and wrapper parameters it comes from, down to its string literals.
func warningKinds(t *testing.T, roots ...string) map[string]string {
	t.Helper()
	type pkgFiles struct {
		files []*ast.File
		names []string
	}
	fset := token.NewFileSet()
	pkgs := map[string]*pkgFiles{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || d.Name() == "lab") {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, p, nil, 0)
			if err != nil {
				return err
			}
			dir := filepath.Dir(p)
			if pkgs[dir] == nil {
				pkgs[dir] = &pkgFiles{}
			}
			pkgs[dir].files = append(pkgs[dir].files, f)
			pkgs[dir].names = append(pkgs[dir].names, p)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	kinds := map[string]string{} // kind -> where
	for _, pf := range pkgs {
		// Every value a name is given in the package, every function's
		// results and parameters, every call by function name.
		values := map[string][]ast.Expr{}
		results := map[string][]ast.Expr{}
		params := map[*ast.FuncDecl][]string{}
		calls := map[string][]*ast.CallExpr{}
		var funcs []*ast.FuncDecl
		for _, f := range pf.files {
			ast.Inspect(f, func(n ast.Node) bool {
				switch x := n.(type) {
				case *ast.ValueSpec:
					for i, name := range x.Names {
						if i < len(x.Values) {
							values[name.Name] = append(values[name.Name], x.Values[i])
						}
					}
				case *ast.AssignStmt:
					for i, l := range x.Lhs {
						if id, ok := l.(*ast.Ident); ok && i < len(x.Rhs) && len(x.Lhs) == len(x.Rhs) {
							values[id.Name] = append(values[id.Name], x.Rhs[i])
						}
					}
				case *ast.FuncDecl:
					funcs = append(funcs, x)
					for _, fld := range x.Type.Params.List {
						for _, nm := range fld.Names {
							params[x] = append(params[x], nm.Name)
						}
					}
					ast.Inspect(x, func(m ast.Node) bool {
						if r, ok := m.(*ast.ReturnStmt); ok && len(r.Results) == 1 {
							results[x.Name.Name] = append(results[x.Name.Name], r.Results[0])
						}
						return true
					})
				case *ast.CallExpr:
					switch fn := x.Fun.(type) {
					case *ast.Ident:
						calls[fn.Name] = append(calls[fn.Name], x)
					case *ast.SelectorExpr:
						calls[fn.Sel.Name] = append(calls[fn.Sel.Name], x)
					}
				}
				return true
			})
		}
		enclosing := func(pos token.Pos) *ast.FuncDecl {
			for _, f := range funcs {
				if f.Pos() <= pos && pos < f.End() {
					return f
				}
			}
			return nil
		}
		seen := map[ast.Expr]bool{}
		var walk func(e ast.Expr, where string)
		walk = func(e ast.Expr, where string) {
			if seen[e] {
				return
			}
			seen[e] = true
			switch x := e.(type) {
			case *ast.BasicLit:
				if s, err := strconv.Unquote(x.Value); err == nil && x.Kind == token.STRING {
					kind, _, _ := strings.Cut(s, ":")
					kinds[kind] = where
				}
			case *ast.BinaryExpr:
				walk(x.X, where)
			case *ast.ParenExpr:
				walk(x.X, where)
			case *ast.CallExpr:
				name := ""
				switch fn := x.Fun.(type) {
				case *ast.Ident:
					name = fn.Name
				case *ast.SelectorExpr:
					name = fn.Sel.Name
				}
				for _, r := range results[name] {
					walk(r, where)
				}
				if name == "" || len(results[name]) == 0 {
					// Another package's function (netif.MissingCode):
					// found when that package is read, by name.
					kinds["func:"+name] = where
				}
			case *ast.SelectorExpr:
				kinds["name:"+x.Sel.Name] = where
			case *ast.Ident:
				for _, v := range values[x.Name] {
					walk(v, where)
				}
				// A wrapper's parameter: what its callers pass.
				if f := enclosing(x.Pos()); f != nil {
					if i := slices.Index(params[f], x.Name); i >= 0 {
						for _, c := range calls[f.Name.Name] {
							if i < len(c.Args) {
								walk(c.Args[i], where)
							}
						}
					}
				}
			}
		}
		for _, c := range calls["Raise"] {
			if len(c.Args) == 4 {
				walk(c.Args[1], fset.Position(c.Pos()).String())
			}
		}
	}
	// Names and functions of other packages: resolve them against every
	// package's constants and functions, by name.
	for k, where := range kinds {
		ref, ok := strings.CutPrefix(k, "name:")
		if !ok {
			ref, ok = strings.CutPrefix(k, "func:")
		}
		if !ok {
			continue
		}
		delete(kinds, k)
		for _, pf := range pkgs {
			for _, f := range pf.files {
				ast.Inspect(f, func(n ast.Node) bool {
					switch x := n.(type) {
					case *ast.ValueSpec:
						for i, nm := range x.Names {
							if nm.Name == ref && i < len(x.Values) {
								if lit, ok := x.Values[i].(*ast.BasicLit); ok {
									s, _ := strconv.Unquote(lit.Value)
									kind, _, _ := strings.Cut(s, ":")
									kinds[kind] = where
								}
							}
						}
					case *ast.FuncDecl:
						if x.Name.Name == ref {
							ast.Inspect(x, func(m ast.Node) bool {
								if r, ok := m.(*ast.ReturnStmt); ok && len(r.Results) == 1 {
									if b, ok := r.Results[0].(*ast.BinaryExpr); ok {
										if lit, ok := b.X.(*ast.BasicLit); ok {
											s, _ := strconv.Unquote(lit.Value)
											kind, _, _ := strings.Cut(s, ":")
											kinds[kind] = where
										}
									}
								}
								return true
							})
						}
					}
					return true
				})
			}
		}
	}
	return kinds
}

// TestEveryHealthWarningHasAFrenchText: every warning kind the code base
// can raise has, for the status page, a French and an English sentence
// saying what it means and what to do. A new warning without them fails
// here.
func TestEveryHealthWarningHasAFrenchText(t *testing.T) {
	kinds := warningKinds(t, "../../pkg", "../../cmd")
	// The scanner must see the kinds raised in every way: a literal
	// through a variable, a constant, a helper function, another
	// package's function, a wrapper's parameter.
	for _, k := range []string{"dhcp-pool-full", "time-unsynchronised", "service-failed", "interface-missing", "perm-repaired", "dns-listen", "config-not-applied", "uplink-offline", "uplinks-all-offline"} {
		if _, ok := kinds[k]; !ok {
			t.Errorf("the scan missed warning kind %s (found %v)", k, kinds)
		}
	}
	var names []string
	for k := range kinds {
		names = append(names, k)
	}
	slices.Sort(names)
	t.Logf("%d warning kinds: %s", len(names), strings.Join(names, " "))
	for _, k := range names {
		for _, l := range []string{"fr", "en"} {
			if v, ok := tr(l).w[k]; !ok || v[0] == "" || v[1] == "" {
				t.Errorf("warning %s (raised at %s) has no %s text (meaning and what to do) in pkg/status/warntext.go", k, kinds[k], l)
			}
		}
	}
}

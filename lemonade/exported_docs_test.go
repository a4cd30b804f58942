package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// publishedModules are the directories, relative to this module, of the
// modules whose library packages users import: every exported name there
// is API and needs a doc comment. The worker-* modules are found by glob.
var publishedModules = []string{"../configfile", "../observability", "../loadbalancer", "../service", "bench"}

// Every exported identifier of the published library packages has a doc
// comment: a top-level func, a method on an exported type, a type, and each
// exported const or var (a comment on its group, or at the end of its line,
// counts), and each method of an exported interface. Package main, tests,
// testdata and generated files are left out.
func TestExportedIdentifiersHaveDocComments(t *testing.T) {
	workers, err := filepath.Glob("../worker-*")
	if err != nil {
		t.Fatal(err)
	}
	roots := append(slices.Clone(publishedModules), workers...)
	var missing []string
	for _, root := range roots {
		if _, err := os.Stat(root); err != nil {
			t.Errorf("published module %s: %v", root, err)
			continue
		}
		m, err := undocumented(root)
		if err != nil {
			t.Fatal(err)
		}
		missing = append(missing, m...)
	}
	for _, m := range missing {
		t.Error(m)
	}
	if len(missing) > 0 {
		t.Logf("%d exported identifiers without a doc comment", len(missing))
	}
}

// undocumented lists "file:line: name" for every exported declaration
// without a doc comment in the library packages under root.
func undocumented(root string) ([]string, error) {
	fset := token.NewFileSet()
	var missing []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		if f.Name.Name == "main" || ast.IsGenerated(f) {
			return nil
		}
		report := func(pos token.Pos, what string) {
			p := fset.Position(pos)
			missing = append(missing, fmt.Sprintf("%s:%d: %s has no doc comment", p.Filename, p.Line, what))
		}
		for _, decl := range f.Decls {
			switch decl := decl.(type) {
			case *ast.FuncDecl:
				checkFunc(decl, report)
			case *ast.GenDecl:
				checkGen(decl, report)
			}
		}
		return nil
	})
	return missing, err
}

func checkFunc(fn *ast.FuncDecl, report func(token.Pos, string)) {
	if !fn.Name.IsExported() || fn.Doc != nil {
		return
	}
	if fn.Recv == nil {
		report(fn.Pos(), "func "+fn.Name.Name)
		return
	}
	recv := receiverType(fn.Recv.List[0].Type)
	if ast.IsExported(recv) {
		report(fn.Pos(), "method "+recv+"."+fn.Name.Name)
	}
}

// receiverType is the name of a method's receiver type: T for T, *T, T[K]
// and *T[K].
func receiverType(e ast.Expr) string {
	for {
		switch x := e.(type) {
		case *ast.StarExpr:
			e = x.X
		case *ast.IndexExpr:
			e = x.X
		case *ast.IndexListExpr:
			e = x.X
		case *ast.ParenExpr:
			e = x.X
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}

func checkGen(gen *ast.GenDecl, report func(token.Pos, string)) {
	// A lone declaration's comment is the GenDecl's; in a group, a spec's own
	// comment documents it, and for consts and vars the group's does too.
	grouped := gen.Lparen.IsValid()
	for _, spec := range gen.Specs {
		switch spec := spec.(type) {
		case *ast.TypeSpec:
			if !spec.Name.IsExported() {
				continue
			}
			if spec.Doc == nil && (grouped || gen.Doc == nil) {
				report(spec.Pos(), "type "+spec.Name.Name)
			}
			if it, ok := spec.Type.(*ast.InterfaceType); ok {
				for _, m := range it.Methods.List {
					for _, n := range m.Names {
						if n.IsExported() && m.Doc == nil && m.Comment == nil {
							report(n.Pos(), "interface method "+spec.Name.Name+"."+n.Name)
						}
					}
				}
			}
		case *ast.ValueSpec:
			if spec.Doc != nil || spec.Comment != nil || gen.Doc != nil {
				continue
			}
			kind := "var "
			if gen.Tok == token.CONST {
				kind = "const "
			}
			for _, n := range spec.Names {
				if n.IsExported() {
					report(n.Pos(), kind+n.Name)
				}
			}
		}
	}
}

package uplink

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLogVocabulary keeps the uplink's log calls in the tree's vocabulary
// (issue 12 item 4): errors under "error", never "err"; no message
// repeating the "uplink: " prefix the component attribute already gives.
func TestLogVocabulary(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	calls := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			switch sel.Sel.Name {
			case "Debug", "Info", "Warn", "Error":
			default:
				return true
			}
			if recv, ok := sel.X.(*ast.SelectorExpr); !ok || recv.Sel.Name != "log" {
				return true
			}
			calls++
			for i, a := range call.Args {
				lit, ok := a.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				s, _ := strconv.Unquote(lit.Value)
				switch {
				case i == 0 && strings.HasPrefix(s, "uplink:"):
					t.Errorf("%s: message %q repeats the component", fset.Position(lit.Pos()), s)
				case i > 0 && i%2 == 1 && s == "err":
					t.Errorf("%s: error logged under \"err\", want \"error\"", fset.Position(lit.Pos()))
				}
			}
			return true
		})
	}
	if calls < 10 {
		t.Fatalf("found only %d log calls: the test no longer sees them", calls)
	}
}

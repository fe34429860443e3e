package configs_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/drivers"
)

// FuzzParse feeds arbitrary bytes to the loader. Seeds are the shipped
// examples and the broken golden cases. A config must never panic the
// loader, and the loader must return exactly one of a config and an error.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"examples/*.yaml", "testdata/broken/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte(""))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("&a [*a]"))
	f.Add([]byte("device: {id: x}\nsensors: [{<<: *nope}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := configs.Parse("fuzz.yaml", data, drivers.Default, testEnv)
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v; want exactly one", c, err)
		}
		if err != nil && err.Error() == "" {
			t.Fatal("empty error message")
		}
	})
}

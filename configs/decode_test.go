package configs

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/edged/edged/sensors"
)

// Inner is embedded inline in testOpts and also used behind a pointer.
type Inner struct {
	A int    `yaml:"a"`
	B string `yaml:"b"`
}

func (i *Inner) Validate() error {
	if i.A < 0 {
		return sensors.FieldErrorf("a", "must not be negative")
	}
	return nil
}

type testOpts struct {
	Inner  `yaml:",inline"`
	Name   string             `yaml:"name"`
	Count  uint8              `yaml:"count"`
	Delta  int16              `yaml:"delta"`
	Ratio  float32            `yaml:"ratio"`
	Wait   time.Duration      `yaml:"wait"`
	Size   int64              `yaml:"size" edged:"size"`
	Token  string             `yaml:"token" edged:"secret"`
	Q      sensors.Quantity   `yaml:"q"`
	Points []sensors.CalPoint `yaml:"points"`
	Ptr    *Inner             `yaml:"ptr"`
	Tags   map[string]int     `yaml:"tags"`
	On     bool               `yaml:"on"`
	Plain  string             // no tag: the key is the lower-cased field name
	Skip   string             `yaml:"-"`
}

func (o *testOpts) Validate() error {
	if o.Name == "bad" {
		return sensors.FieldErrorf("name", "must not be bad")
	}
	if o.Name == "worse" {
		return fmt.Errorf("the whole block is worse")
	}
	return nil
}

func defaultTestOpts() testOpts {
	return testOpts{Name: "default", Count: 7, Wait: time.Second}
}

var testEnv = map[string]string{"TOKEN": "s3cret", "EMPTY": ""}

func lookupTestEnv(k string) (string, bool) { v, ok := testEnv[k]; return v, ok }

// decodeTest decodes src into fresh testOpts and returns the value and the
// problems as "LINE:COL: message".
func decodeTest(t *testing.T, src string) (testOpts, []string) {
	t.Helper()
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(src), &root); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	d := newDecoder("t.yaml", lookupTestEnv)
	v := defaultTestOpts()
	d.decode(&root, reflect.ValueOf(&v).Elem(), field{})
	var msgs []string
	if errs := d.result(); errs != nil {
		for _, e := range errs.List {
			if e.File != "t.yaml" {
				t.Errorf("error %v has file %q", e, e.File)
			}
			msgs = append(msgs, fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg))
		}
	}
	return v, msgs
}

func TestDecodeValues(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want func(o *testOpts)
	}{
		{"empty document keeps defaults", ``, func(*testOpts) {}},
		{"null keeps defaults", `{name: ~, count: null}`, func(*testOpts) {}},
		{"inline keys", `{a: 3, b: x}`, func(o *testOpts) { o.A, o.B = 3, "x" }},
		{"hex int", `{count: 0x2a}`, func(o *testOpts) { o.Count = 42 }},
		{"octal and binary", `{count: 0o17, delta: -0b101}`, func(o *testOpts) { o.Count, o.Delta = 15, -5 }},
		{"leading zero is decimal", `{count: 010}`, func(o *testOpts) { o.Count = 10 }},
		{"quoted int", `{count: "200"}`, func(o *testOpts) { o.Count = 200 }},
		{"float", `{ratio: 0.25}`, func(o *testOpts) { o.Ratio = 0.25 }},
		{"int as float", `{ratio: 3}`, func(o *testOpts) { o.Ratio = 3 }},
		{"yaml infinity", `{ratio: -.inf}`, func(o *testOpts) { o.Ratio = float32(math.Inf(-1)) }},
		{"duration", `{wait: 1m30s}`, func(o *testOpts) { o.Wait = 90 * time.Second }},
		{"zero duration", `{wait: 0}`, func(o *testOpts) { o.Wait = 0 }},
		{"size binary", `{size: 256MiB}`, func(o *testOpts) { o.Size = 256 << 20 }},
		{"size decimal fraction", `{size: 1.5GB}`, func(o *testOpts) { o.Size = 1_500_000_000 }},
		{"size bare", `{size: 4096}`, func(o *testOpts) { o.Size = 4096 }},
		{"secret from env", `{token: "${TOKEN}"}`, func(o *testOpts) { o.Token = "s3cret" }},
		{"secret set but empty", `{token: "${EMPTY}"}`, func(o *testOpts) { o.Token = "" }},
		{"text unmarshaler", `{q: humidity}`, func(o *testOpts) { o.Q = sensors.Humidity }},
		{"list of text unmarshalers", `{points: ["0 -> 1", "2 -> 3"]}`, func(o *testOpts) {
			o.Points = []sensors.CalPoint{{Measured: 0, True: 1}, {Measured: 2, True: 3}}
		}},
		{"pointer allocated", `{ptr: {a: 1}}`, func(o *testOpts) { o.Ptr = &Inner{A: 1} }},
		{"map", `{tags: {x: 1, y: 2}}`, func(o *testOpts) { o.Tags = map[string]int{"x": 1, "y": 2} }},
		{"bool", `{on: true}`, func(o *testOpts) { o.On = true }},
		{"untagged field", `{plain: p}`, func(o *testOpts) { o.Plain = "p" }},
		{"non-secret keeps ${}", `{name: "${TOKEN}"}`, func(o *testOpts) { o.Name = "${TOKEN}" }},
		{"alias", "delta: &n 5\ncount: *n\na: *n", func(o *testOpts) { o.Delta, o.Count, o.A = 5, 5, 5 }},
		{"merge key, explicit wins", "ptr: &p {a: 1, b: one}\ntags: {}\n<<: *p\nb: two", func(o *testOpts) {
			o.Ptr, o.A, o.B, o.Tags = &Inner{A: 1, B: "one"}, 1, "two", map[string]int{}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := decodeTest(t, tt.src)
			if len(errs) > 0 {
				t.Fatalf("unexpected errors:\n%s", strings.Join(errs, "\n"))
			}
			want := defaultTestOpts()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"unknown key with suggestion", "nmae: x", []string{
			`1:1: unknown key "nmae": did you mean "name"? (known keys: a, b, count, delta, name, on, plain, points, ptr, q, ratio, size, tags, token, wait)`}},
		{"unknown key far from all", "zzzzzzzz: 1", []string{
			`1:1: unknown key "zzzzzzzz" (known keys: a, b, count, delta, name, on, plain, points, ptr, q, ratio, size, tags, token, wait)`}},
		{"list for a mapping", "- a", []string{"1:1: want a mapping, got a list"}},
		{"mapping for a string", "name: {x: 1}", []string{"1:7: name: want a string, got a mapping"}},
		{"list for an int", "count: [1]", []string{"1:8: count: want an integer, got a list"}},
		{"scalar for a list", "points: x", []string{`1:9: points: want a list, got "x"`}},
		{"uint8 overflow", "count: 0x100", []string{"1:8: count: 0x100 is out of range (0..0xff)"}},
		{"negative uint", "count: -1", []string{"1:8: count: -1 is out of range (0..0xff)"}},
		{"int16 overflow", "delta: 40000", []string{"1:8: delta: 40000 is out of range (-32768..32767)"}},
		{"fraction for int", "count: 1.5", []string{"1:8: count: want a whole number, got 1.5"}},
		{"word for int", "count: many", []string{`1:8: count: want an integer, got "many"`}},
		{"float32 overflow", "ratio: 1e39", []string{"1:8: ratio: 1e39 is out of range"}},
		{"bad bool", "on: yes", []string{`1:5: on: want true or false, got "yes"`}},
		{"duration without unit", "wait: 5", []string{"1:7: wait: duration 5 has no unit: add one, e.g. 5s or 5ms"}},
		{"bad duration", "wait: soon", []string{`1:7: wait: want a duration such as 5s, 1m30s or 250ms, got "soon"`}},
		{"bad size", "size: 12 parsecs", []string{`1:7: size: size "12 parsecs": want a number and an optional unit B, KB, MB, GB, KiB, MiB or GiB, e.g. 256MiB`}},
		{"inline secret", "token: hunter2", []string{"1:8: token: secrets must not be inline: use ${ENV_VAR} or the token_file form"}},
		{"unset env", "token: ${NOPE}", []string{"1:8: token: environment variable NOPE is not set"}},
		{"text unmarshaler error", "q: warmth", []string{`1:4: q: sensors: unknown quantity "warmth" (want one of temperature, humidity, illuminance, pressure, voltage, level)`}},
		{"list element error", "points: [\"1 -> 2\", nope]", []string{`1:20: points: calibration point "nope": want "measured -> true", e.g. "0.5 -> 0.0"`}},
		{"duplicate key", "name: a\nname: b", []string{"2:1: key \"name\" is already set on line 1"}},
		{"non-string key", "[a]: 1", []string{"1:1: a key must be a plain string, got a list"}},
		{"field error at value", "name: bad", []string{"1:7: name: must not be bad"}},
		{"field error at key when value null", "a: -1\nb:", []string{"1:4: a: must not be negative"}},
		{"inline validated first", "a: -1\nname: bad", []string{"1:4: a: must not be negative"}},
		{"plain validate error at mapping", "count: 1\nname: worse", []string{"1:1: the whole block is worse"}},
		{"nested validate at nested key", "ptr:\n  b: x\n  a: -2", []string{"3:6: a: must not be negative"}},
		{"no validate after decode errors", "name: bad\ncount: x", []string{`2:8: count: want an integer, got "x"`}},
		{"all errors sorted", "wait: 5\ncount: 300\nnmae: x\non: 1", []string{
			"1:7: wait: duration 5 has no unit: add one, e.g. 5s or 5ms",
			"2:8: count: 300 is out of range (0..0xff)",
			`3:1: unknown key "nmae": did you mean "name"? (known keys: a, b, count, delta, name, on, plain, points, ptr, q, ratio, size, tags, token, wait)`,
			`4:5: on: want true or false, got "1"`,
		}},
		{"anchored error once", "ptr: &p {a: x}\ntags: {}\n<<: *p", []string{`1:13: a: want an integer, got "x"`}},
		{"bad merge", "<<: 5", []string{`1:5: <<: want a mapping or a list of mappings to merge, got "5"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got := decodeTest(t, tt.src)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// tree is recursive, so a self-referencing alias could decode forever.
type tree struct {
	Kids []tree `yaml:"kids"`
}

// nested is a list of lists all the way down.
type nested []nested

func TestDecodeAliasBombs(t *testing.T) {
	laughs := "a: &a [[], [], [], [], [], [], [], [], [], []]\n"
	for i, prev := 'b', 'a'; i <= 'j'; i, prev = i+1, i {
		laughs += fmt.Sprintf("%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n", i, i, prev, prev, prev, prev, prev, prev, prev, prev, prev, prev)
	}
	tests := []struct {
		name, src, want string
		into            any
	}{
		{"billion laughs", laughs, "document too large", &map[string]nested{}},
		{"self-referencing list", "&a {kids: [*a]}", "nested more than", &tree{}},
		{"self-merging mapping", "&a {<<: *a, kids: []}", "nested more than", &tree{}},
		{"wide merge fan-out", "a: &a {kids: []}\nb: &b {<<: [*a, *a, *a, *a, *a, *a, *a, *a]}\n" +
			"c: &c {<<: [*b, *b, *b, *b, *b, *b, *b, *b]}\nd: &d {<<: [*c, *c, *c, *c, *c, *c, *c, *c]}\n" +
			"e: &e {<<: [*d, *d, *d, *d, *d, *d, *d, *d]}\nf: &f {<<: [*e, *e, *e, *e, *e, *e, *e, *e]}\n" +
			"g: {<<: [*f, *f, *f, *f, *f, *f, *f, *f]}", "document too large", &map[string]tree{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var root yaml.Node
			if err := yaml.Unmarshal([]byte(tt.src), &root); err != nil {
				t.Fatalf("yaml: %v", err)
			}
			d := newDecoder("t.yaml", lookupTestEnv)
			d.decode(&root, reflect.ValueOf(tt.into).Elem(), field{})
			errs := d.result()
			if errs == nil || len(errs.List) != 1 || !strings.Contains(errs.List[0].Msg, tt.want) {
				t.Fatalf("got %v, want one error containing %q", errs, tt.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"4096", 4096, ""},
		{"0", 0, ""},
		{"0x1000", 4096, ""},
		{"010", 10, ""},
		{"64KiB", 64 << 10, ""},
		{"256MiB", 256 << 20, ""},
		{"256 MiB", 256 << 20, ""},
		{"2GiB", 2 << 30, ""},
		{"1TiB", 1 << 40, ""},
		{"100B", 100, ""},
		{"1kB", 1000, ""},
		{"64KB", 64000, ""},
		{"1.5GB", 1_500_000_000, ""},
		{"0.5KiB", 512, ""},
		{"9223372036854775807", math.MaxInt64, ""},
		{"8589934592GiB", 0, "too large"},
		{"1e30", 0, "want a number and an optional unit"},
		{"1.0000001KiB", 0, "not a whole number of bytes"},
		{"-1", 0, "must not be negative"},
		{"-1MiB", 0, "must not be negative"},
		{"12MB/s", 0, "want a number and an optional unit"},
		{"256M", 0, "want a number and an optional unit"},
		{"MiB", 0, "want a number and an optional unit"},
		{"", 0, "want a number and an optional unit"},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("parseSize(%q): %v", tt.in, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("parseSize(%q) = %d, %v; want error containing %q", tt.in, got, err, tt.err)
		case tt.err == "" && got != tt.want:
			t.Errorf("parseSize(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"5s", 5 * time.Second, ""},
		{"1m30s", 90 * time.Second, ""},
		{"250ms", 250 * time.Millisecond, ""},
		{"-1s", -time.Second, ""},
		{"0", 0, ""},
		{"0.0", 0, ""},
		{"5", 0, "has no unit"},
		{"1.5", 0, "has no unit"},
		{"5 s", 0, "want a duration"},
		{"", 0, "want a duration"},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("parseDuration(%q): %v", tt.in, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("parseDuration(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.err)
		case tt.err == "" && got != tt.want:
			t.Errorf("parseDuration(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseIntRanges(t *testing.T) {
	tests := []struct {
		in   string
		bits int
		uns  bool
		want string // value, or the start of the error
	}{
		{"127", 8, false, "127"},
		{"-128", 8, false, "-128"},
		{"128", 8, false, "128 is out of range (-128..127)"},
		{"0x77", 16, true, "119"},
		{"0xffff", 16, true, "65535"},
		{"0x10000", 16, true, "0x10000 is out of range (0..0xffff)"},
		{"18446744073709551615", 64, true, "18446744073709551615"},
		{"18446744073709551616", 64, true, "18446744073709551616 is out of range (0..0xffffffffffffffff)"},
		{"-0x1", 16, true, "-0x1 is out of range (0..0xffff)"},
		{"1_000", 32, false, "1000"},
		{"0b1111", 8, true, "15"},
		{"1e3", 32, false, "want a whole number, got 1e3"},
		{"0x", 32, false, `want an integer, got "0x"`},
	}
	for _, tt := range tests {
		var got string
		if tt.uns {
			u, err := parseUint(tt.in, tt.bits)
			got = fmt.Sprint(u)
			if err != nil {
				got = err.Error()
			}
		} else {
			i, err := parseInt(tt.in, tt.bits)
			got = fmt.Sprint(i)
			if err != nil {
				got = err.Error()
			}
		}
		if got != tt.want {
			t.Errorf("parse(%q, %d bits, unsigned=%v) = %q, want %q", tt.in, tt.bits, tt.uns, got, tt.want)
		}
	}
}

func TestClosest(t *testing.T) {
	keys := []string{"address", "bus", "interval", "offline_after", "repeatability"}
	tests := []struct{ in, want string }{
		{"adress", "address"},
		{"Address", "address"},
		{"bsu", "bus"},
		{"intervall", "interval"},
		{"offline-after", "offline_after"},
		{"repeatabilty", "repeatability"},
		{"xyz", ""},
		{"b", ""},
		{"temperature", ""},
	}
	for _, tt := range tests {
		if got := closest(tt.in, keys); got != tt.want {
			t.Errorf("closest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"kitten", "sitting", 3},
		{"adress", "address", 1}, {"bsu", "bus", 1}, {"ab", "ba", 1}, {"abc", "ca", 3}, {"same", "same", 0},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestDecodeCapsErrorCount(t *testing.T) {
	src := strings.Repeat("- {count: x}\n", maxErrors+20)
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(src), &root); err != nil {
		t.Fatal(err)
	}
	d := newDecoder("t.yaml", lookupTestEnv)
	var v []testOpts
	d.decode(&root, reflect.ValueOf(&v).Elem(), field{key: "list"})
	errs := d.result()
	if errs == nil || len(errs.List) != maxErrors {
		t.Fatalf("got %d errors, want %d", len(errs.List), maxErrors)
	}
	if last := errs.List[maxErrors-1].Msg; last != "too many problems: 21 more not shown" {
		t.Errorf("last message = %q", last)
	}
	if first := errs.List[0].Error(); first != `t.yaml:1:11: count: want an integer, got "x"` {
		t.Errorf("first = %q", first)
	}
}

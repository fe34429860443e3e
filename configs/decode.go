package configs

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/edged/edged/sensors"
)

// Error is one problem in a config file, positioned at the YAML node at
// fault. Line and Col are 1-based.
type Error struct {
	File      string
	Line, Col int
	Msg       string
	// Unset names the environment variable when the only problem is that
	// a ${NAME} reference to it is not set: a machine without the
	// secrets (a laptop before a deploy) can check the rest.
	Unset string
}

// Error formats e as FILE:LINE:COL: message, the form editors jump to.
func (e Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is every problem found in one config, sorted by position. Load
// and Parse return it (as *Errors) whenever the content is at fault, so
// `edged validate` can print all problems of a file in one run.
type Errors struct {
	List []Error
}

// Error joins the problems, one FILE:LINE:COL: message per line.
func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, x := range e.List {
		lines[i] = x.Error()
	}
	return strings.Join(lines, "\n")
}

// Limits that keep a hostile or broken file from exhausting a Pi: aliases
// can expand a small file exponentially ("billion laughs"), and an alias
// can even refer to the node that contains it.
const (
	maxNodes = 100_000 // decoded values, counting every alias expansion
	maxDepth = 100     // nesting of decoded values
	// maxErrors caps the problems reported; the last line says how many
	// more there were.
	maxErrors = 100
)

// decoder walks a yaml.Node tree into Go values, collecting every problem
// instead of stopping at the first.
type decoder struct {
	file      string
	env       func(string) (string, bool)
	errs      []Error
	budget    int
	depth     int
	exhausted bool
	// defaults makes fresh values of a type with its defaults applied, for
	// list elements and pointers that the YAML brings into existence.
	defaults map[reflect.Type]func() any
	// custom decodes values of a type itself (sensors and actuators, whose
	// keys split between common and driver options).
	custom map[reflect.Type]func(n *yaml.Node, v reflect.Value)
}

func newDecoder(file string, env func(string) (string, bool)) *decoder {
	return &decoder{
		file:     file,
		env:      env,
		budget:   maxNodes,
		defaults: map[reflect.Type]func() any{},
		custom:   map[reflect.Type]func(*yaml.Node, reflect.Value){},
	}
}

// errorf records a problem at n.
func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	line, col := 1, 1
	if n != nil && n.Line > 0 {
		line, col = n.Line, n.Column
	}
	d.errs = append(d.errs, Error{File: d.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

// problemsSince reports whether a problem other than an unset ${NAME}
// was recorded after the first n.
func (d *decoder) problemsSince(n int) bool {
	for _, e := range d.errs[n:] {
		if e.Unset == "" {
			return true
		}
	}
	return false
}

// result sorts the collected problems by position and drops duplicates:
// an anchored value used in several places fails at the same node, with
// the same message, each time.
func (d *decoder) result() *Errors {
	if len(d.errs) == 0 {
		return nil
	}
	sort.SliceStable(d.errs, func(i, j int) bool {
		a, b := d.errs[i], d.errs[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	out := d.errs[:0:0]
	seen := map[Error]bool{}
	for _, e := range d.errs {
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	if len(out) > maxErrors {
		last := out[maxErrors-1]
		last.Msg = fmt.Sprintf("too many problems: %d more not shown", len(out)-maxErrors+1)
		out = append(out[:maxErrors-1], last)
	}
	return &Errors{List: out}
}

// spend charges n decoded values against the alias-bomb budget and reports
// whether decoding may go on.
func (d *decoder) spend(at *yaml.Node, n int) bool {
	if d.exhausted {
		return false
	}
	d.budget -= n
	if d.budget < 0 {
		d.exhausted = true
		d.errorf(at, "document too large: more than %d values after expanding aliases", maxNodes)
		return false
	}
	return true
}

// field describes the destination of a value: its YAML key (for
// messages) and the edged:"..." options of its struct field.
type field struct {
	key    string
	size   bool
	secret bool
	env    bool // may be ${ENV_VAR}, or inline (a password hash)
}

func (f field) prefix() string {
	if f.key == "" {
		return ""
	}
	return f.key + ": "
}

var (
	durationType  = reflect.TypeOf(time.Duration(0))
	unmarshalType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
	validatorType = reflect.TypeOf((*interface{ Validate() error })(nil)).Elem()
)

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// describe names what a node is, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch {
	case isNull(n):
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.AliasNode:
		return "an alias"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "..."
	}
	return strconv.Quote(v)
}

// want names the YAML shape a Go type is written as.
func want(t reflect.Type, f field) string {
	if reflect.PointerTo(t).Implements(unmarshalType) {
		return "a string"
	}
	switch {
	case t == durationType:
		return "a duration such as 5s"
	case f.size:
		return "a size such as 256MiB"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Pointer:
		return want(t.Elem(), f)
	}
	return t.String()
}

// newValue returns a pointer to a fresh value of t with its registered
// defaults.
func (d *decoder) newValue(t reflect.Type) reflect.Value {
	p := reflect.New(t)
	if fn, ok := d.defaults[t]; ok {
		if v := reflect.ValueOf(fn()); v.Type() == t {
			p.Elem().Set(v)
		}
	}
	return p
}

// decode stores the value of n in v, which holds its default.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, f field) {
	if !d.spend(n, 1) {
		return
	}
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		d.exhausted = true
		d.errorf(n, "%snested more than %d levels deep", f.prefix(), maxDepth)
		return
	}
	if n != nil && n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n != nil && n.Kind == yaml.AliasNode {
		d.decode(n.Alias, v, f)
		return
	}
	t := v.Type()
	if fn, ok := d.custom[t]; ok {
		if !isNull(n) {
			fn(n, v)
		}
		return
	}
	if isNull(n) {
		// An empty value means "not set": defaults stay, pointers are nil.
		if t.Kind() == reflect.Pointer {
			v.SetZero()
		}
		return
	}
	if t.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(d.newValue(t.Elem()))
		}
		d.decode(n, v.Elem(), f)
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalType) {
		s, ok := d.scalar(n, t, f)
		if !ok {
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.errorf(n, "%s%v", f.prefix(), err)
		}
		return
	}
	switch {
	case t == durationType:
		d.duration(n, v, f)
		return
	case f.size && t.Kind() == reflect.Int64:
		s, ok := d.scalar(n, t, f)
		if !ok {
			return
		}
		size, err := parseSize(s)
		if err != nil {
			d.errorf(n, "%s%v", f.prefix(), err)
			return
		}
		v.SetInt(size)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, f)
	case reflect.Slice:
		d.decodeSlice(n, v, f)
	case reflect.Map:
		d.decodeMap(n, v, f)
	case reflect.String:
		d.decodeString(n, v, f)
	case reflect.Bool:
		s, ok := d.scalar(n, t, f)
		if !ok {
			return
		}
		switch strings.ToLower(s) {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			d.errorf(n, "%swant true or false, got %s", f.prefix(), describe(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		s, ok := d.scalar(n, t, f)
		if !ok {
			return
		}
		i, err := parseInt(s, t.Bits())
		if err != nil {
			d.errorf(n, "%s%v", f.prefix(), err)
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		s, ok := d.scalar(n, t, f)
		if !ok {
			return
		}
		u, err := parseUint(s, t.Bits())
		if err != nil {
			d.errorf(n, "%s%v", f.prefix(), err)
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		s, ok := d.scalar(n, t, f)
		if !ok {
			return
		}
		x, err := parseFloat(s, t.Bits())
		if err != nil {
			d.errorf(n, "%s%v", f.prefix(), err)
			return
		}
		v.SetFloat(x)
	default:
		d.errorf(n, "%scannot be set from YAML (Go type %s)", f.prefix(), t)
	}
}

// scalar returns the text of a scalar node, or records that the node is
// of the wrong kind.
func (d *decoder) scalar(n *yaml.Node, t reflect.Type, f field) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, "%swant %s, got %s", f.prefix(), want(t, f), describe(n))
		return "", false
	}
	return n.Value, true
}

var envRef = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$`)

func (d *decoder) decodeString(n *yaml.Node, v reflect.Value, f field) {
	s, ok := d.scalar(n, v.Type(), f)
	if !ok {
		return
	}
	if (f.secret || f.env) && s != "" {
		m := envRef.FindStringSubmatch(s)
		if m == nil && f.env {
			v.SetString(s)
			return
		}
		if m == nil {
			d.errorf(n, "%ssecrets must not be inline: use ${ENV_VAR} or the %s_file form", f.prefix(), f.key)
			return
		}
		val, set := d.env(m[1])
		if !set {
			d.errorf(n, "%senvironment variable %s is not set", f.prefix(), m[1])
			d.errs[len(d.errs)-1].Unset = m[1]
			return
		}
		s = val
	}
	v.SetString(s)
}

func (d *decoder) duration(n *yaml.Node, v reflect.Value, f field) {
	s, ok := d.scalar(n, v.Type(), f)
	if !ok {
		return
	}
	dur, err := parseDuration(s)
	if err != nil {
		d.errorf(n, "%s%v", f.prefix(), err)
		return
	}
	v.SetInt(int64(dur))
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, f field) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "%swant a list, got %s", f.prefix(), describe(n))
		return
	}
	t := v.Type()
	s := reflect.MakeSlice(t, 0, len(n.Content))
	for _, c := range n.Content {
		e := d.newValue(t.Elem()).Elem()
		d.decode(c, e, f)
		s = reflect.Append(s, e)
	}
	v.Set(s)
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, f field) {
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		d.errorf(n, "%scannot be set from YAML (Go type %s)", f.prefix(), t)
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%swant a mapping, got %s", f.prefix(), describe(n))
		return
	}
	m := reflect.MakeMap(t)
	for _, p := range d.pairs(n) {
		e := d.newValue(t.Elem()).Elem()
		d.decode(p.val, e, field{key: p.name, size: f.size, secret: f.secret, env: f.env})
		m.SetMapIndex(reflect.ValueOf(p.name).Convert(t.Key()), e)
	}
	v.Set(m)
}

// pair is one key: value of a mapping, after merge keys are expanded.
type pair struct {
	name     string
	key, val *yaml.Node
}

// at returns the node to blame for a problem with this pair's value: the
// value when there is one, else the key.
func (p pair) at() *yaml.Node {
	if isNull(p.val) {
		return p.key
	}
	return p.val
}

// pairs lists the entries of mapping n, reporting non-string and
// duplicate keys. Merge keys (<<: *anchor) are expanded; explicit keys
// override merged ones.
func (d *decoder) pairs(n *yaml.Node) []pair {
	if !d.spend(n, len(n.Content)/2+1) {
		return nil
	}
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		d.exhausted = true
		d.errorf(n, "nested more than %d levels deep", maxDepth)
		return nil
	}
	var out, merged []pair
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		kr := k
		if kr.Kind == yaml.AliasNode && kr.Alias != nil {
			kr = kr.Alias
		}
		if kr.Kind != yaml.ScalarNode || isNull(kr) {
			d.errorf(k, "a key must be a plain string, got %s", describe(kr))
			continue
		}
		if kr.Tag == "!!merge" {
			merged = append(merged, d.mergePairs(val)...)
			continue
		}
		if prev, dup := seen[kr.Value]; dup {
			d.errorf(k, "key %q is already set on line %d", kr.Value, prev.Line)
			continue
		}
		seen[kr.Value] = k
		out = append(out, pair{name: kr.Value, key: k, val: val})
	}
	for _, p := range merged {
		if _, dup := seen[p.name]; !dup {
			seen[p.name] = p.key
			out = append(out, p)
		}
	}
	return out
}

func (d *decoder) mergePairs(n *yaml.Node) []pair {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		return d.pairs(n)
	case yaml.SequenceNode:
		var out []pair
		for _, c := range n.Content {
			if c.Kind == yaml.AliasNode && c.Alias != nil {
				c = c.Alias
			}
			if c.Kind != yaml.MappingNode {
				d.errorf(c, "<<: want a mapping or a list of mappings to merge, got %s", describe(c))
				continue
			}
			out = append(out, d.pairs(c)...)
		}
		return out
	}
	d.errorf(n, "<<: want a mapping or a list of mappings to merge, got %s", describe(n))
	return nil
}

// structInfo is the YAML view of a struct type.
type structInfo struct {
	fields  map[string]fieldInfo
	names   []string // sorted, for messages
	inlines [][]int  // index paths of ,inline structs, deepest first
}

type fieldInfo struct {
	index []int
	field
}

var structCache sync.Map // reflect.Type -> *structInfo

func structOf(t reflect.Type) *structInfo {
	if si, ok := structCache.Load(t); ok {
		return si.(*structInfo)
	}
	si := &structInfo{fields: map[string]fieldInfo{}}
	addFields(si, t, nil)
	sort.Strings(si.names)
	structCache.Store(t, si)
	return si
}

func addFields(si *structInfo, t reflect.Type, index []int) {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag, hasTag := sf.Tag.Lookup("yaml")
		if tag == "-" || !sf.IsExported() && !sf.Anonymous {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		path := append(append([]int(nil), index...), i)
		if hasTag && strings.Contains(","+opts+",", ",inline,") && sf.Type.Kind() == reflect.Struct {
			addFields(si, sf.Type, path)
			si.inlines = append(si.inlines, path)
			continue
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		if _, dup := si.fields[name]; dup {
			continue // the shallower field wins, as in yaml.v3
		}
		edged := "," + sf.Tag.Get("edged") + ","
		si.fields[name] = fieldInfo{index: path, field: field{
			key:    name,
			size:   strings.Contains(edged, ",size,"),
			secret: strings.Contains(edged, ",secret,"),
			env:    strings.Contains(edged, ",env,"),
		}}
		si.names = append(si.names, name)
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, f field) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%swant a mapping, got %s", f.prefix(), describe(n))
		return
	}
	d.decodeFields(n, d.pairs(n), v, nil)
}

// decodeFields decodes pairs of mapping n into struct v, then validates v
// if everything inside it decoded cleanly (validating half-decoded values
// would only add confusing follow-on errors). An unset ${NAME} deeper down
// does not count: the rest is checked as if it were set, except that a
// Validate error about the unset key itself is dropped (it judges a value
// nobody knows: "password_hash missing"). extraKeys are keys that are
// valid in the mapping but handled elsewhere; they appear in the list of
// known keys.
func (d *decoder) decodeFields(n *yaml.Node, pairs []pair, v reflect.Value, extraKeys []string) {
	si := structOf(v.Type())
	before := len(d.errs)
	var unknown map[string]bool
	for _, p := range pairs {
		fi, ok := si.fields[p.name]
		if !ok {
			d.unknownKey(p, si.names, extraKeys)
			continue
		}
		at := len(d.errs)
		fv := v.FieldByIndex(fi.index)
		d.decode(p.val, fv, fi.field)
		if fv.Kind() == reflect.String && len(d.errs) > at && d.errs[at].Unset != "" {
			if unknown == nil {
				unknown = map[string]bool{}
			}
			unknown[p.name] = true
		}
	}
	if d.problemsSince(before) || d.exhausted || !v.CanAddr() {
		return
	}
	for _, path := range si.inlines {
		if d.validate(n, pairs, v.FieldByIndex(path), unknown) {
			return
		}
	}
	d.validate(n, pairs, v, unknown)
}

// validate calls v's Validate method, if it has one, and positions its
// error: at the key a *sensors.FieldError names, else at the mapping. It
// reports whether there was an error. An error about a key in unknown (an
// unset ${NAME}) is not recorded: the unset variable is the problem.
func (d *decoder) validate(n *yaml.Node, pairs []pair, v reflect.Value, unknown map[string]bool) bool {
	if !v.CanAddr() || !v.Addr().Type().Implements(validatorType) {
		return false
	}
	err := v.Addr().Interface().(interface{ Validate() error }).Validate()
	if err == nil {
		return false
	}
	at := n
	var fe *sensors.FieldError
	if errors.As(err, &fe) {
		if unknown[fe.Field] {
			return true
		}
		for _, p := range pairs {
			if p.name == fe.Field {
				at = p.at()
				break
			}
		}
	}
	d.errorf(at, "%v", err)
	return true
}

func (d *decoder) unknownKey(p pair, names, extra []string) {
	known := append(append([]string(nil), names...), extra...)
	sort.Strings(known)
	msg := fmt.Sprintf("unknown key %q", p.name)
	if best := closest(p.name, known); best != "" {
		msg += fmt.Sprintf(": did you mean %q?", best)
	}
	d.errorf(p.key, "%s (known keys: %s)", msg, strings.Join(known, ", "))
}

// closest returns the candidate nearest to s by edit distance, if it is
// close enough to be a likely typo.
func closest(s string, candidates []string) string {
	best, bestDist := "", math.MaxInt
	for _, c := range candidates {
		if dist := editDistance(strings.ToLower(s), c); dist < bestDist {
			best, bestDist = c, dist
		}
	}
	if bestDist > max(1, min(3, len(s)/3)) {
		return ""
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b,
// in bytes: Levenshtein plus swaps of adjacent bytes, the commonest typo.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt // not a typo of any key we have
	}
	m := make([][]int, len(a)+1)
	for i := range m {
		m[i] = make([]int, len(b)+1)
		m[i][0] = i
	}
	for j := range m[0] {
		m[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			m[i][j] = min(m[i-1][j]+1, m[i][j-1]+1, m[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				m[i][j] = min(m[i][j], m[i-2][j-2]+1)
			}
		}
	}
	return m[len(a)][len(b)]
}

// leadingZero matches decimals written with leading zeros, which base-0
// parsing would read as octal: "010" means ten in a config file.
var leadingZero = regexp.MustCompile(`^[+-]?0[0-9]+$`)

func intBase(s string) (string, int) {
	if leadingZero.MatchString(s) {
		return s, 10
	}
	return s, 0
}

// parseInt parses a signed integer of the given bit size; 0x, 0o and 0b
// prefixes and _ separators are allowed.
func parseInt(s string, bits int) (int64, error) {
	s, base := intBase(s)
	i, err := strconv.ParseInt(s, base, bits)
	if err == nil {
		return i, nil
	}
	if errors.Is(err, strconv.ErrRange) {
		lo, hi := -int64(1)<<(bits-1), int64(1)<<(bits-1)-1
		return 0, fmt.Errorf("%s is out of range (%d..%d)", s, lo, hi)
	}
	return 0, notInteger(s)
}

// parseUint parses an unsigned integer of the given bit size.
func parseUint(s string, bits int) (uint64, error) {
	s, base := intBase(s)
	u, err := strconv.ParseUint(s, base, bits)
	if err == nil {
		return u, nil
	}
	hi := uint64(1)<<bits - 1
	if bits == 64 {
		hi = math.MaxUint64
	}
	if errors.Is(err, strconv.ErrRange) || strings.HasPrefix(s, "-") {
		if _, ierr := strconv.ParseInt(s, base, 64); ierr == nil || errors.Is(ierr, strconv.ErrRange) {
			return 0, fmt.Errorf("%s is out of range (0..%#x)", s, hi)
		}
	}
	return 0, notInteger(s)
}

func notInteger(s string) error {
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return fmt.Errorf("want a whole number, got %s", s)
	}
	return fmt.Errorf("want an integer, got %q", s)
}

// parseFloat parses a number, including YAML's .inf and .nan spellings.
func parseFloat(s string, bits int) (float64, error) {
	switch strings.ToLower(s) {
	case ".inf", "+.inf":
		return math.Inf(1), nil
	case "-.inf":
		return math.Inf(-1), nil
	case ".nan":
		return math.NaN(), nil
	}
	x, err := strconv.ParseFloat(s, bits)
	if err == nil {
		return x, nil
	}
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%s is out of range", s)
	}
	return 0, fmt.Errorf("want a number, got %q", s)
}

// parseDuration parses "5s", "1m30s", "250ms". A bare number other than 0
// is refused: "5" could mean seconds or milliseconds.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err == nil {
		return d, nil
	}
	if x, ferr := strconv.ParseFloat(strings.TrimSpace(s), 64); ferr == nil {
		if x == 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("duration %s has no unit: add one, e.g. %ss or %sms", s, s, s)
	}
	return 0, fmt.Errorf("want a duration such as 5s, 1m30s or 250ms, got %q", s)
}

var sizeUnits = map[string]int64{
	"": 1, "B": 1,
	"KB": 1e3, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
}

// parseSize parses a byte count: "4096", "64KiB", "256MiB", "1.5GB".
// KiB/MiB/GiB are powers of 1024, KB/MB/GB powers of 1000.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	digits, base := intBase(s)
	if i, err := strconv.ParseInt(digits, base, 64); err == nil {
		if i < 0 {
			return 0, fmt.Errorf("size %s must not be negative", s)
		}
		return i, nil
	}
	cut := strings.IndexFunc(s, unicode.IsLetter)
	if cut < 0 {
		cut = len(s)
	}
	num, unit := strings.TrimSpace(s[:cut]), s[cut:]
	mult, ok := sizeUnits[unit]
	if !ok || num == "" {
		return 0, fmt.Errorf("size %q: want a number and an optional unit B, KB, MB, GB, KiB, MiB or GiB, e.g. 256MiB", s)
	}
	if i, err := strconv.ParseInt(num, 10, 64); err == nil {
		if i < 0 {
			return 0, fmt.Errorf("size %s must not be negative", s)
		}
		if i > math.MaxInt64/mult {
			return 0, fmt.Errorf("size %s is too large", s)
		}
		return i * mult, nil
	}
	x, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: want a number and an optional unit B, KB, MB, GB, KiB, MiB or GiB, e.g. 256MiB", s)
	}
	if !(x >= 0) {
		return 0, fmt.Errorf("size %s must not be negative", s)
	}
	b := x * float64(mult)
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("size %s is too large", s)
	}
	if b != math.Trunc(b) {
		return 0, fmt.Errorf("size %s is not a whole number of bytes", s)
	}
	return int64(b), nil
}

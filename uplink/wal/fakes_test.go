package wal

import (
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
)

var errCrashed = errors.New("simulated power cut")

// memFS is an in-memory FS that models what a power cut keeps: per file
// the content as of the last fsync and the current (page cache) content;
// per directory the names as of the last directory sync and the current
// ones. At the crashAt-th sync it "loses power": it snapshots what a
// reboot could find (see crashImage) and fails every later call.
type memFS struct {
	mu      sync.Mutex
	files   map[string]*inode // current names
	durable map[string]*inode // names as of the last SyncDir
	syncs   int
	crashAt int // 0: never
	crashed bool
	image   *memFS
	rng     *rand.Rand
	// failWrite, if set, is called before each write; an error fails it.
	failWrite func(name string) error
	// failOpen, if set, is called before each open; an error fails it.
	failOpen func(name string, flag int) error
	// failTruncate, if set, is called before each truncate.
	failTruncate func(name string) error
	// tearWrite, if set, is called before each write; an error fails
	// it after its first n bytes, as a disk that fills in the middle
	// of a write(2) leaves them.
	tearWrite func(name string, p []byte) (n int, err error)
	// beforeWrite, if set, is called at the start of each Write, without
	// the lock: it may block.
	beforeWrite func(name string)
	// beforeSync, if set, is called at the start of each file Sync
	// (with the file's name) and directory sync (with the directory's),
	// without the lock: it may block, as a slow card's fsync does.
	beforeSync func(name string)
	// syncMoment, if set, picks what a file Sync made durable (see
	// memFile.Sync) among moments, oldest first; otherwise the rng does.
	syncMoment func(name string, moments [][]byte) int
	reads      int // ReadAt calls
}

type inode struct {
	data, synced []byte
	// syncs are the Syncs of this file running, each with the contents
	// the file had from when it began.
	syncs []*[][]byte
	// ver counts writes and truncates; syncedVer is the ver of synced.
	ver, syncedVer uint64
}

// changed records a write or truncate for the Syncs running. Call with
// the memFS lock held.
func (in *inode) changed() {
	in.ver++
	for _, mo := range in.syncs {
		*mo = append(*mo, append([]byte(nil), in.data...))
	}
}

func newMemFS(seed uint64) *memFS {
	return &memFS{files: map[string]*inode{}, durable: map[string]*inode{}, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// put stores a durable file, for tests that craft directories.
func (m *memFS) put(name string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := &inode{data: append([]byte(nil), data...), synced: append([]byte(nil), data...)}
	m.files[name], m.durable[name] = in, in
}

// clone returns an independent copy of a durable image (one that
// crashImage made: every file synced).
func (m *memFS) clone() *memFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := newMemFS(m.rng.Uint64())
	for n, in := range m.files {
		cp := &inode{data: append([]byte(nil), in.data...), synced: append([]byte(nil), in.synced...)}
		c.files[n] = cp
		if m.durable[n] == in {
			c.durable[n] = cp
		}
	}
	return c
}

func (m *memFS) get(name string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	in, ok := m.files[name]
	if !ok {
		return nil, false
	}
	return append([]byte(nil), in.data...), true
}

func (m *memFS) names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for n := range m.files {
		out = append(out, filepath.Base(n))
	}
	sort.Strings(out)
	return out
}

// sync counts a sync and reports whether power is lost at it.
func (m *memFS) sync() error {
	if m.crashed {
		return errCrashed
	}
	m.syncs++
	if m.crashAt > 0 && m.syncs == m.crashAt {
		m.image = m.crashImage()
		m.crashed = true
		return errCrashed
	}
	return nil
}

// crashImage returns what a reboot could find: each name created or
// removed since the last directory sync is there or not (a coin flip);
// each file keeps its synced bytes, and every byte written since is, per
// 512-byte sector, either kept, lost (old content), zeroed or garbage;
// the length is the synced or the current one.
func (m *memFS) crashImage() *memFS {
	img := newMemFS(m.rng.Uint64())
	seen := map[*inode][]byte{}
	content := func(in *inode) []byte {
		if b, ok := seen[in]; ok {
			return b
		}
		d, c := in.synced, in.data
		n := len(d)
		if m.rng.IntN(2) == 0 {
			n = len(c)
		}
		out := make([]byte, n)
		for sec := 0; sec < n; sec += 512 {
			mode := m.rng.IntN(4)
			for i := sec; i < min(sec+512, n); i++ {
				var dv, cv byte
				inD, inC := i < len(d), i < len(c)
				if inD {
					dv = d[i]
				}
				if inC {
					cv = c[i]
				}
				if inD && inC && dv == cv {
					out[i] = dv
					continue
				}
				switch mode {
				case 0:
					out[i] = dv
				case 1:
					out[i] = cv
				case 2:
					out[i] = 0
				default:
					out[i] = byte(m.rng.Uint32())
				}
			}
		}
		seen[in] = out
		return out
	}
	names := map[string]*inode{}
	for n, in := range m.durable {
		if m.files[n] == in || m.rng.IntN(2) == 0 {
			names[n] = in
		}
	}
	for n, in := range m.files {
		if m.durable[n] != in && m.rng.IntN(2) == 0 {
			names[n] = in
		}
	}
	for n, in := range names {
		img.put(n, content(in))
	}
	return img
}

func (m *memFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.crashed {
		return nil, errCrashed
	}
	if m.failOpen != nil {
		if err := m.failOpen(name, flag); err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
	}
	in, ok := m.files[name]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case !ok && flag&os.O_CREATE == 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case !ok:
		in = &inode{}
		m.files[name] = in
	}
	if flag&os.O_TRUNC != 0 {
		in.data = in.data[:0:0]
	}
	return &memFile{fs: m, in: in, name: name, flag: flag}, nil
}

func (m *memFS) ReadDir(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.crashed {
		return nil, errCrashed
	}
	var out []string
	for n := range m.files {
		if filepath.Dir(n) == filepath.Clean(dir) {
			out = append(out, filepath.Base(n))
		}
	}
	return out, nil
}

func (m *memFS) Rename(o, n string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.crashed {
		return errCrashed
	}
	in, ok := m.files[o]
	if !ok {
		return &fs.PathError{Op: "rename", Path: o, Err: fs.ErrNotExist}
	}
	delete(m.files, o)
	m.files[n] = in
	return nil
}

func (m *memFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.crashed {
		return errCrashed
	}
	if _, ok := m.files[name]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(m.files, name)
	return nil
}

func (m *memFS) MkdirAll(string, fs.FileMode) error { return nil }

func (m *memFS) SyncDir(dir string) error {
	if m.beforeSync != nil {
		m.beforeSync(dir)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.sync(); err != nil {
		return err
	}
	m.durable = map[string]*inode{}
	for n, in := range m.files {
		m.durable[n] = in
	}
	return nil
}

type memFile struct {
	fs     *memFS
	in     *inode
	name   string
	flag   int
	pos    int64
	closed bool
}

func (f *memFile) check() error {
	if f.fs.crashed {
		return errCrashed
	}
	if f.closed {
		return os.ErrClosed
	}
	return nil
}

func (f *memFile) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.pos)
	f.fs.mu.Lock()
	f.pos += int64(n)
	f.fs.mu.Unlock()
	return n, err
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	f.fs.reads++
	if err := f.check(); err != nil {
		return 0, err
	}
	if off >= int64(len(f.in.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.in.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	if f.fs.beforeWrite != nil {
		f.fs.beforeWrite(f.name)
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.flag&os.O_APPEND != 0 {
		f.pos = int64(len(f.in.data))
	}
	n, err := f.writeAt(p, f.pos)
	f.pos += int64(n)
	return n, err
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return f.writeAt(p, off)
}

// writeAt writes p at off. Call with fs.mu held.
func (f *memFile) writeAt(p []byte, off int64) (int, error) {
	if err := f.check(); err != nil {
		return 0, err
	}
	if f.flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: fs.ErrPermission}
	}
	if f.fs.failWrite != nil {
		if err := f.fs.failWrite(f.name); err != nil {
			return 0, err
		}
	}
	var torn error
	if f.fs.tearWrite != nil {
		var n int
		if n, torn = f.fs.tearWrite(f.name, p); torn != nil {
			p = p[:n]
		}
	}
	end := off + int64(len(p))
	if end > int64(len(f.in.data)) {
		nd := make([]byte, end)
		copy(nd, f.in.data)
		f.in.data = nd
	}
	copy(f.in.data[off:], p)
	f.in.changed()
	return len(p), torn
}

// Sync makes durable the file as it was at one moment while it ran: from
// when it began (all an fsync promises) to when it ended, after any write
// or truncate made meanwhile (the log's interval fsync runs beside
// Appends; the kernel writes back whatever is dirty when it gets to it).
func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	if err := f.check(); err != nil {
		f.fs.mu.Unlock()
		return err
	}
	moments := &[][]byte{append([]byte(nil), f.in.data...)}
	ver := f.in.ver // of (*moments)[0]; each later one is one more
	f.in.syncs = append(f.in.syncs, moments)
	f.fs.mu.Unlock()
	if f.fs.beforeSync != nil {
		f.fs.beforeSync(f.name)
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	f.in.syncs = slices.DeleteFunc(f.in.syncs, func(mo *[][]byte) bool { return mo == moments })
	if err := f.check(); err != nil {
		return err
	}
	if err := f.fs.sync(); err != nil {
		return err
	}
	i := 0
	if n := len(*moments); n > 1 {
		if f.fs.syncMoment != nil {
			i = f.fs.syncMoment(f.name, *moments)
		} else {
			i = f.fs.rng.IntN(n)
		}
	}
	// Durable bytes never go back: an fsync that began before another
	// one and ends after it leaves what that one made durable, when it
	// picked an earlier moment.
	if v := ver + uint64(i); v >= f.in.syncedVer {
		f.in.synced, f.in.syncedVer = (*moments)[i], v
	}
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	if f.fs.failTruncate != nil {
		if err := f.fs.failTruncate(f.name); err != nil {
			return err
		}
	}
	if size < int64(len(f.in.data)) {
		f.in.data = append([]byte(nil), f.in.data[:size]...)
	} else {
		nd := make([]byte, size)
		copy(nd, f.in.data)
		f.in.data = nd
	}
	f.in.changed()
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	return int64(len(f.in.data)), nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return os.ErrClosed
	}
	f.closed = true
	return nil
}

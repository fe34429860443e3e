package benchrig

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edged/edged/uplink/uplinktest"
)

// Edged is a running `edged run` on a generated config, started and
// stopped by PID. Its MQTT listener is on a loopback port picked free.
type Edged struct {
	// LAN is the address of its plain MQTT listener.
	LAN string
	// Bin is the binary the next Start runs, and Env what it adds to
	// this process's environment (the torture test arms a crash point
	// for one start with it).
	Bin string
	Env []string

	cfg    string
	config func(lan string) string
	cmd    *exec.Cmd
	logs   *lockedBuffer
	done   chan struct{}
}

var notifySockets atomic.Int64

// readyTimeout bounds one start; startAttempts bounds how often a start
// picks a new port after the last one was taken meanwhile.
const (
	readyTimeout  = 20 * time.Second
	startAttempts = 5
)

// StartEdged writes config(lan) to dir/edged.yaml, with lan a free
// loopback address for the broker's MQTT listener, and starts `bin run`
// on it; it returns once edged has told $NOTIFY_SOCKET READY=1 (every
// listener open). The config must keep its state under dir.
func StartEdged(bin, dir string, config func(lan string) string) (*Edged, error) {
	e := NewEdged(bin, dir, config)
	return e, e.Start()
}

// NewEdged is StartEdged without the start: set Env, then Start.
func NewEdged(bin, dir string, config func(lan string) string) *Edged {
	return &Edged{Bin: bin, cfg: filepath.Join(dir, "edged.yaml"), config: config}
}

// Start starts the process again (after Kill or Stop), on the same
// config; a new port is picked only if the old one was taken.
func (e *Edged) Start() error {
	var err error
	for i := 0; i < startAttempts; i++ {
		if e.LAN == "" || i > 0 {
			if e.LAN, err = uplinktest.FreeAddr(); err != nil {
				return err
			}
			if err := os.WriteFile(e.cfg, []byte(e.config(e.LAN)), 0o644); err != nil {
				return err
			}
		}
		if err = e.start(); err == nil || !strings.Contains(e.Logs(), "address already in use") {
			return err
		}
	}
	return err
}

func (e *Edged) start() error {
	// An abstract socket: nothing to remove.
	name := fmt.Sprintf("@benchrig-%d-%d", os.Getpid(), notifySockets.Add(1))
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer sock.Close()
	e.logs = &lockedBuffer{}
	e.cmd = exec.Command(e.Bin, "run", "-c", e.cfg)
	e.cmd.Stdout, e.cmd.Stderr = e.logs, e.logs
	e.cmd.Env = append(append(os.Environ(), e.Env...), "NOTIFY_SOCKET="+name)
	// It dies with us, even when a test binary times out and runs no
	// cleanup: an edged left behind would hold ports, and under flock
	// the lock.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := e.cmd.Start(); err != nil {
		return fmt.Errorf("benchrig: start edged: %w", err)
	}
	e.done = make(chan struct{})
	cmd, done := e.cmd, e.done
	go func() { _ = cmd.Wait(); close(done) }()
	ready := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				return // closed on return
			}
			if bytes.Contains(buf[:n], []byte("READY=1")) {
				close(ready)
				return
			}
		}
	}()
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case <-ready:
		return nil
	case <-done:
		return fmt.Errorf("benchrig: edged exited at start: %v\n%s", cmd.ProcessState, e.Logs())
	case <-t.C:
		e.Kill()
		return fmt.Errorf("benchrig: edged not ready within %v:\n%s", readyTimeout, e.Logs())
	}
}

// Pid returns the process id.
func (e *Edged) Pid() int { return e.cmd.Process.Pid }

// Logs returns what the current process wrote.
func (e *Edged) Logs() string { return e.logs.String() }

// Stop sends SIGTERM and waits up to 15 s (edged stops within 10 s),
// then kills.
func (e *Edged) Stop() {
	if e.cmd == nil || e.exited() {
		return
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM) // by PID: the process Start started
	select {
	case <-e.done:
	case <-time.After(15 * time.Second):
		e.Kill()
	}
}

// Kill ends the process with SIGKILL, as a crash, and waits for it.
func (e *Edged) Kill() {
	if e.cmd == nil || e.exited() {
		return
	}
	_ = e.cmd.Process.Kill() // by PID: the process Start started
	<-e.done
}

func (e *Edged) exited() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// Done is closed when the current process has exited.
func (e *Edged) Done() <-chan struct{} { return e.done }

// ExitState is how the current process ended; nil while it runs.
func (e *Edged) ExitState() *os.ProcessState {
	if e.cmd == nil || !e.exited() {
		return nil
	}
	return e.cmd.ProcessState
}

// Exited reports an error if the process is no longer running.
func (e *Edged) Exited() error {
	if e.exited() {
		return errors.New("benchrig: edged exited: " + e.cmd.ProcessState.String() + "\n" + e.Logs())
	}
	return nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 { // keep the first MiB: a start error is at the top
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// BuildEdged builds the edged binary of this tree into dir, with the
// given build tags (e.g. "edgedfailpoints"), for the commands' tests
// (`make bench-*` use bin/edged from `make build`).
func BuildEdged(dir string, tags ...string) (string, error) {
	name := strings.Join(append([]string{"edged"}, tags...), "-")
	bin := filepath.Join(dir, name)
	out, err := exec.Command("go", "build", "-tags", strings.Join(tags, ","), "-o", bin, "github.com/edged/edged/cmd/edged").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("benchrig: go build %s: %v\n%s", name, err, out)
	}
	return bin, nil
}

package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/localbroker"
)

// fifoReader replaces path by a named pipe (mode 0600) and returns a
// function that waits until edged opens it for reading (as a stuck disk
// read, it then blocks in read until the write end closes) and returns
// the write end.
func fifoReader(t *testing.T, path string) (waitReader func() *os.File) {
	t.Helper()
	tmp := path + ".fifo"
	if err := syscall.Mkfifo(tmp, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return func() *os.File {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			// A non-blocking open for writing succeeds only while a
			// reader has the pipe open (ENXIO otherwise).
			w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
			if err == nil {
				t.Cleanup(func() { w.Close() })
				return w
			}
			if time.Now().After(deadline) {
				t.Fatalf("edged did not open %s for reading within 20s: %v", path, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// waitNotice waits until edged sent line to $NOTIFY_SOCKET and returns
// the index of its first occurrence.
func waitNotice(t *testing.T, d *daemonProc, line string, within time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if i := slices.IndexFunc(d.notices(), func(n notice) bool { return strings.HasPrefix(n.line, line) }); i >= 0 {
			return i
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v\n%s", line, within, d.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitExit waits for edged to exit, at most within.
func waitExit(t *testing.T, d *daemonProc, within time.Duration) {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(within):
		t.Fatalf("edged did not exit within %v of SIGTERM\n%s", within, d.logs.String())
	}
}

// TestReloadStopIntegration pins the bug where a stop signal that came
// during a reload waiting on a stuck read was not served until that read
// returned (no STOPPING=1, no stop). Reloads now run off the signal
// goroutine, and a stop is served at once:
//   - while the reload still reads the file (a named pipe nobody writes
//     stands for a stuck SD card), the reload is dropped and the clean
//     stop goes ahead without it;
//   - once the reload has begun to apply (stuck reading a user's
//     password_hash_file), STOPPING=1 is sent at once and the clean stop
//     waits for the reload to end, so it never runs on a half-applied
//     config; systemd hears no READY=1 after STOPPING=1;
//   - a reload that does not end within the stop budget: outputs safe,
//     exit 1 (systemd's ExecStopPost=edged safe then runs too).
func TestReloadStopIntegration(t *testing.T) {
	bin := edgedBinary(t)

	t.Run("while the file is read", func(t *testing.T) {
		d, _, _, _ := startSim(t, bin, nil)
		waitReader := fifoReader(t, d.cmd.Args[3])
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil { // by PID: the process we started
			t.Fatal(err)
		}
		waitReader() // held open: the read stays stuck
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitExit(t, d, 20*time.Second) // a hang guard: the stop does not wait for the read
		if d.err != nil || !strings.Contains(d.logs.String(), "msg=stopped") {
			t.Fatalf("exit %v, want a clean stop\n%s", d.err, d.logs.String())
		}
		waitNotice(t, d, "STOPPING=1", 0)
	})

	hash, err := localbroker.HashPassword([]byte("s3cret-pass"))
	if err != nil {
		t.Fatal(err)
	}
	// stuckApplying starts edged with a user whose password_hash_file,
	// read again by every reload once it applies, then becomes a pipe;
	// sends SIGHUP, waits until the reload reads the pipe, sends SIGTERM
	// and waits for STOPPING=1. It returns the pipe's write end and the
	// index of STOPPING=1 in the notices.
	stuckApplying := func(t *testing.T) (*daemonProc, *os.File, int) {
		hashFile := filepath.Join(t.TempDir(), "op.hash")
		if err := os.WriteFile(hashFile, []byte(hash+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		d, _, _, _ := startSim(t, bin, func(c string) string {
			return c + "\nusers:\n  - {name: op, role: operator, password_hash_file: " + hashFile + "}\n"
		})
		waitReader := fifoReader(t, hashFile)
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		w := waitReader()
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		return d, w, waitNotice(t, d, "STOPPING=1", 20*time.Second) // a hang guard
	}

	t.Run("while the reload applies", func(t *testing.T) {
		d, w, stopping := stuckApplying(t)
		select {
		case <-d.done:
			t.Fatalf("edged exited before the reload it was applying ended: %v\n%s", d.err, d.logs.String())
		default:
		}
		if strings.Contains(d.logs.String(), "msg=stopped") {
			t.Fatalf("the stop ran while a reload was applying\n%s", d.logs.String())
		}
		if _, err := w.WriteString(hash + "\n"); err != nil {
			t.Fatal(err)
		}
		w.Close()
		waitExit(t, d, 20*time.Second)
		logs := d.logs.String()
		if d.err != nil {
			t.Fatalf("exit %v, want a clean stop\n%s", d.err, logs)
		}
		applied, stopped := strings.Index(logs, "msg=\"config reloaded\""), strings.Index(logs, "msg=stopped")
		if applied < 0 || stopped < applied {
			t.Errorf("want the reload applied, then the stop\n%s", logs)
		}
		for _, n := range d.notices()[stopping:] {
			if n.line == "READY=1" || strings.HasPrefix(n.line, "RELOADING=1") {
				t.Errorf("%q after STOPPING=1: %v", n.line, d.notices())
			}
		}
	})

	t.Run("a reload stuck past the stop budget", func(t *testing.T) {
		d, _, _ := stuckApplying(t)
		waitExit(t, d, stopBudget+20*time.Second) // a hang guard
		logs := d.logs.String()
		if code := d.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(logs, "did not end within the stop budget") || strings.Contains(logs, "msg=stopped") {
			t.Errorf("exit code %d, want 1 after the stop budget, with the outputs safe and no clean stop\n%s", code, logs)
		}
	})
}

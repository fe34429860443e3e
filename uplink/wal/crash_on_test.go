//go:build edgedfailpoints

package wal_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/uplink/wal"
)

// crashChildEnv makes the test binary a child that appends and acks on
// the log in the directory it names until a crash point kills it.
const crashChildEnv = "WAL_CRASH_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		os.Exit(crashChild(dir))
	}
	os.Exit(m.Run())
}

// crashChild appends records "r<i>" (16 per batch from 4 goroutines, so
// commits group), prints "a SEQ I" once each Append returned, reads and
// acks every record behind it, printing "k SEQ" before each Ack. Small
// segments make it rotate, a short ack interval writes the marker often.
// It runs at most 20 s: a crash point that never fires ends it with 3.
func crashChild(dir string) int {
	l, err := wal.Open(dir, wal.Opts{SegmentBytes: 1 << 10, MaxBytes: 1 << 20, Sync: wal.SyncInterval,
		SyncInterval: 10 * time.Millisecond, AckEvery: 8, AckInterval: 10 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// One write(2) per line, straight from the goroutine that knows it
	// (atomic on a pipe), so a line is out before the next step.
	out := func(s string) { _, _ = os.Stdout.WriteString(s) }
	go func() {
		var after uint64
		for {
			recs, err := l.Read(context.Background(), after, 64, nil)
			if err != nil {
				return
			}
			after = recs[len(recs)-1].Seq
			out(fmt.Sprintf("k %d\n", after)) // before: a kill between the two must not look like a loss
			l.Ack(after)
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; time.Now().Before(deadline); i += 4 {
		done := make(chan struct{}, 4)
		for j := range 4 {
			go func(i int) {
				seq, err := l.Append([]byte("r" + strconv.Itoa(i)))
				if err == nil {
					out(fmt.Sprintf("a %d %d\n", seq, i))
				}
				done <- struct{}{}
			}(i + j)
		}
		for range 4 {
			<-done
		}
	}
	return 3
}

// TestCrashPointsKillAndRecover runs the child at every crash point: it
// must die by SIGKILL there, and the log must open again with every
// record whose Append returned and was not acked readable, with its body.
func TestCrashPointsKillAndRecover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	for _, point := range wal.CrashPoints {
		for _, hit := range []int{5, 40} {
			t.Run(fmt.Sprintf("%s@%d", point, hit), func(t *testing.T) {
				dir := t.TempDir()
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, wal.CrashEnv+"="+point+"@"+strconv.Itoa(hit))
				var stderr strings.Builder
				cmd.Stderr = &stderr
				stdout, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				appended := map[uint64]string{}
				var acked uint64
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					f := strings.Fields(sc.Text())
					seq, _ := strconv.ParseUint(f[1], 10, 64)
					switch {
					case f[0] == "a" && len(f) == 3:
						appended[seq] = "r" + f[2]
					case f[0] == "k":
						acked = max(acked, seq)
					}
				}
				err = cmd.Wait()
				ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
				if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
					t.Fatalf("child ended with %v, want killed by SIGKILL at %s@%d:\n%s", err, point, hit, stderr.String())
				}
				l, err := wal.Open(dir, wal.Opts{SegmentBytes: 1 << 10, MaxBytes: 1 << 20})
				if err != nil {
					t.Fatalf("open after the crash: %v", err)
				}
				defer l.Close()
				got := map[uint64]string{}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				var after uint64
				for l.Stats().Backlog > 0 {
					recs, err := l.Read(ctx, after, 256, nil)
					if err != nil {
						t.Fatalf("read after the crash: %v (backlog %d)", err, l.Stats().Backlog)
					}
					for _, r := range recs {
						got[r.Seq] = string(r.Body)
					}
					after = recs[len(recs)-1].Seq
					l.Ack(after)
				}
				lost := 0
				for seq, body := range appended {
					if seq > acked && got[seq] != body {
						lost++
						if lost < 5 {
							t.Errorf("seq %d (%s), appended and not acked: after recovery %q", seq, body, got[seq])
						}
					}
				}
				if lost > 0 || len(appended) == 0 {
					t.Errorf("%d of %d appended records lost (acked up to %d)", lost, len(appended), acked)
				}
			})
		}
	}
}

package uplinktest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// TestMain lets the test binary stand in for mosquitto: run with
// fakeMosquittoEnv set, it is fakeMosquitto.
func TestMain(m *testing.M) {
	if os.Getenv(fakeMosquittoEnv) != "" {
		fakeMosquitto()
		return
	}
	os.Exit(m.Run())
}

const fakeMosquittoEnv = "UPLINKTEST_FAKE_MOSQUITTO"

// fakeMosquitto reads `-c FILE` as mosquitto would, opens only the first
// listener, logs that it is running anyway, and serves until killed: the
// worst case of a broker whose later listeners are not up yet.
func fakeMosquitto() {
	if len(os.Args) != 3 || os.Args[1] != "-c" {
		fmt.Fprintf(os.Stderr, "fake mosquitto: usage: -c FILE, got %q\n", os.Args[1:])
		os.Exit(2)
	}
	f, err := os.Open(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake mosquitto:", err)
		os.Exit(1)
	}
	var port string
	sc := bufio.NewScanner(f)
	for sc.Scan() && port == "" {
		if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == "listener" {
			port = fields[1]
		}
	}
	f.Close()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake mosquitto:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "1: Opening ipv4 listen socket on port %s.\n1: mosquitto version fake running\n", port)
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		c.Close()
	}
}

// Regression (issue 14): StartMosquitto returned once the first listener
// accepted connections, and TestMutualTLSIntegration then dialled the
// second before mosquitto had opened it. A broker whose second listener
// never opens must not be reported ready. The fake is a process of its
// own, so this is an integration test.
func TestStartWaitsForEveryListenerIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped under -short")
	}
	t.Setenv(fakeMosquittoEnv, "1")
	mq, err := StartMosquitto(os.Args[0], t.TempDir(), "", "")
	if err == nil {
		mq.Stop()
		t.Fatalf("StartMosquitto reported ready with its second listener %s closed", mq.Addrs[1])
	}
	if !strings.Contains(err.Error(), "is not") {
		t.Fatalf("error does not say which listener is down: %v", err)
	}
}

// TestStartRetriesATakenPortIntegration hands mosquitto a port another
// process holds, as happens when one takes it between the pick and
// mosquitto's bind (issue 14): the start is retried on new ports.
func TestStartRetriesATakenPortIntegration(t *testing.T) {
	bin := MosquittoBin(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	picks := 0
	pickAddrs = func(n int) ([]string, error) {
		picks++
		addrs, err := freeAddrs(n)
		if picks == 1 && err == nil {
			addrs[n-1] = taken.Addr().String() // the second listener's port is gone
		}
		return addrs, err
	}
	t.Cleanup(func() { pickAddrs = freeAddrs })

	mq, err := StartMosquitto(bin, t.TempDir(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer mq.Stop()
	if picks != 2 || !strings.Contains(mq.Output(), "Address already in use") {
		t.Errorf("%d port picks, want 2 (one refused start, one good); mosquitto output:\n%s", picks, mq.Output())
	}
	for _, a := range mq.Addrs {
		if a == taken.Addr().String() {
			t.Errorf("listener on the taken address %s", a)
		}
	}
}

// TestKillIsACrashIntegration: Kill must end mosquitto as kill -9 does,
// without the persistence save a SIGTERM makes, because the bench-uplink
// crash scenario counts what that loses; Start then serves again.
func TestKillIsACrashIntegration(t *testing.T) {
	bin := MosquittoBin(t)
	dir := t.TempDir()
	// user root: run as root, mosquitto would switch to its own user,
	// which cannot write into the test's directory.
	mq, err := StartMosquitto(bin, dir, "user root\npersistence true\npersistence_location "+dir+"/")
	if err != nil {
		t.Fatal(err)
	}
	defer mq.Stop()
	retain := func() {
		t.Helper()
		p, err := Connect(mq.Addr, "retainer")
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if _, err := p.c.Publish(context.Background(), &paho.Publish{Topic: "kept", Payload: []byte("1"), QoS: 1, Retain: true}); err != nil {
			t.Fatal(err)
		}
	}
	retain() // something to save
	pid := mq.Pid()
	if pid == 0 {
		t.Fatal("Pid is 0 for a running mosquitto")
	}
	mq.Kill()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("process %d still there after Kill", pid)
	}
	db := filepath.Join(dir, "mosquitto.db")
	if _, err := os.Stat(db); err == nil {
		t.Errorf("Kill let mosquitto save %s: it was a clean stop, not a crash", db)
	}
	if err := mq.Start(); err != nil {
		t.Fatal(err)
	}
	if mq.Pid() == pid || mq.Pid() == 0 {
		t.Errorf("Pid after a restart: %d (was %d)", mq.Pid(), pid)
	}
	retain()
	mq.Stop()
	if _, err := os.Stat(db); err != nil {
		t.Errorf("a clean Stop saved nothing (the test cannot tell a crash from a stop): %v", err)
	}
}

package main

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/edged/edged/localbroker"
)

// TestPasswdFromStdin: a password piped on stdin becomes a bcrypt line
// that pastes into a user entry; the password is not echoed.
func TestPasswdFromStdin(t *testing.T) {
	var out, errb bytes.Buffer
	if err := cmdPasswd(nil, strings.NewReader("correct horse\n"), &out, &errb); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^password_hash: ("\$2a\$10\$[./A-Za-z0-9]{53}")\n$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("output %q", out.String())
	}
	hash, _ := strconv.Unquote(m[1])
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte("correct horse")) != nil {
		t.Fatal("the hash is not of the piped password")
	}
	if strings.Contains(out.String()+errb.String(), "correct horse") {
		t.Fatal("the password was echoed")
	}
	for _, in := range []string{"", "\n"} {
		if err := cmdPasswd(nil, strings.NewReader(in), &out, &errb); err == nil {
			t.Errorf("empty password %q accepted", in)
		}
	}
}

func TestTokenCommand(t *testing.T) {
	var out bytes.Buffer
	if err := cmdToken(nil, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	tok := lines[0]
	m := regexp.MustCompile(`(?m)^tokens: \["(sha256:[0-9a-f]{64})"\]$`).FindStringSubmatch(out.String())
	if !strings.HasPrefix(tok, "edt_") || m == nil || localbroker.TokenHash(tok) != m[1] {
		t.Fatalf("output %q", out.String())
	}
}

package uplink

import (
	"net/url"
	"strings"
	"testing"
)

// TestURLErrorsRedactPassword pins issue 7: a url with a password in it
// was repeated verbatim in the validation error, which systemd's
// ExecStartPre `edged validate` writes to the journal.
func TestURLErrorsRedactPassword(t *testing.T) {
	for _, tc := range []struct {
		name, url, password string
	}{
		{"credentials", "mqtts://gh-01:Zq9xW7kP@cloud.example:8883", "Zq9xW7kP"},
		{"bad port", "mqtts://gh-01:Zq9xW7kP@cloud.example:88x3", "Zq9xW7kP"},
		{"no port", "mqtts://gh-01:Zq9xW7kP@cloud.example", "Zq9xW7kP"},
		{"bad scheme", "ftp://gh-01:Zq9xW7kP@cloud.example:8883", "Zq9xW7kP"},
		{"websocket", "wss://gh-01:Zq9xW7kP@cloud.example:443/mqtt", "Zq9xW7kP"},
		{"no scheme", "gh-01:Zq9xW7kP@cloud.example:8883", "Zq9xW7kP"},
		{"bad escape in password", "mqtts://gh-01:Zq9%zzW7@cloud.example:8883", "Zq9%zzW7"},
		{"slash in password", "mqtts://gh-01:Zq9/xW7kP@cloud.example:8883", "Zq9/xW7kP"},
		{"bad host", "mqtts://gh-01:Zq9xW7kP@cloud example:8883", "Zq9xW7kP"},
		{"control character", "mqtts://gh-01:Zq9xW7kP@cloud.example:8883\n", "Zq9xW7kP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOpts()
			o.URL = tc.url
			o.Forward = []Rule{DefaultRule()}
			o.Forward[0].Local = "#"
			err := o.Validate()
			if err == nil {
				t.Fatalf("%q validated", tc.url)
			}
			msg := err.Error()
			t.Log(msg)
			// No three characters of the password in a row: an escape
			// error quotes three ("%zz"), a port error the rest after ':'.
			for i := 0; i+3 <= len(tc.password); i++ {
				if w := tc.password[i : i+3]; strings.Contains(msg, w) {
					t.Errorf("error shows %q of the password: %s", w, msg)
				}
			}
			if !strings.Contains(msg, "xxxxx") {
				t.Errorf("error does not show where the redacted password was: %s", msg)
			}
		})
	}
}

// TestRedactURLMatchesRedacted checks that redactURL, which also works on
// strings net/url cannot parse, agrees with url.URL.Redacted where both
// apply.
func TestRedactURLMatchesRedacted(t *testing.T) {
	for _, s := range []string{
		"mqtts://cloud.example:8883",
		"mqtts://gh-01@cloud.example:8883",
		"mqtts://gh-01:Zq9xW7kP@cloud.example:8883",
		"mqtt://:Zq9xW7kP@10.0.0.1:1883",
		"mqtts://gh-01:p@ss@cloud.example:8883",
		"mqtts://[::1]:8883",
	} {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := redactURL(s), u.Redacted(); got != want {
			t.Errorf("redactURL(%q) = %q, url.Redacted gives %q", s, got, want)
		}
	}
}

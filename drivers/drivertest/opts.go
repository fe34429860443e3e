package drivertest

import (
	"errors"
	"testing"

	"github.com/edged/edged/sensors"
)

// OptsRow is one row of a driver's options table: Edit changes the
// default options, and Field is the YAML key that the resulting error
// must name, or "" when the options are valid.
type OptsRow[O any] struct {
	Name  string
	Edit  func(*O)
	Field string
}

// RunOpts checks a driver's options table: for each row, validate accepts
// the edited defaults or rejects them with a *sensors.FieldError naming
// Field, and open (the driver's New) agrees, wrapping the same FieldError,
// so the config loader can point at the key whichever of the two it
// calls.
func RunOpts[O any](t *testing.T, defaults func() O, validate func(*O) error, open func(O) error, rows []OptsRow[O]) {
	t.Helper()
	for _, tt := range rows {
		t.Run(tt.Name, func(t *testing.T) {
			o := defaults()
			tt.Edit(&o)
			check := func(what string, err error) {
				t.Helper()
				var fe *sensors.FieldError
				switch {
				case tt.Field == "" && err != nil:
					t.Errorf("%s = %v, want no error", what, err)
				case tt.Field != "" && (!errors.As(err, &fe) || fe.Field != tt.Field):
					t.Errorf("%s = %v, want a FieldError for %q", what, err, tt.Field)
				}
			}
			check("Validate()", validate(&o))
			check("New()", open(o))
		})
	}
}

package benchrig

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

func sortDurations(d []time.Duration) { slices.Sort(d) }

// Percentile returns the p-th percentile (0..100) of sorted, 0 if empty.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

// Median returns the median of v (the upper one of an even count), 0 if
// empty.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// Row is one line of a comparison table: a figure for the reference
// (Mosquitto) and for edged, with the ratio edged / reference.
type Row struct {
	Figure     string
	Ref, Edged float64
	// Format formats one value (e.g. "%.2f ms"); without it the row
	// shows RefText and EdgedText. Note goes into the ratio column when
	// the ratio means nothing (say, 0 lost vs 0 lost).
	Format             string
	RefText, EdgedText string
	Note               string
	// Floor is the Go floor's figure (ServeFloor), for FloorTable.
	Floor float64
}

// Table writes rows as a markdown table with the ratio edged / ref.
func Table(w io.Writer, ref string, rows []Row) {
	fmt.Fprintf(w, "| figure | %s | edged | ratio |\n|---|---|---|---|\n", ref)
	for _, r := range rows {
		ratio := r.Note
		if ratio == "" {
			ratio = Ratio(r.Edged, r.Ref)
		}
		ref, edged := r.RefText, r.EdgedText
		if r.Format != "" {
			ref, edged = Group(fmt.Sprintf(r.Format, r.Ref)), Group(fmt.Sprintf(r.Format, r.Edged))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", r.Figure, ref, edged, ratio)
	}
}

// FloorTable writes rows (those with a Format) as a markdown table with
// the Go floor between the reference and edged: what the floor costs
// against the reference is what Go itself costs here, and edged against
// the floor is what edged adds.
func FloorTable(w io.Writer, ref string, rows []Row) {
	fmt.Fprintf(w, "| figure | %s | Go floor | edged | floor / %s | edged / floor |\n|---|---|---|---|---|---|\n", ref, ref)
	for _, r := range rows {
		if r.Format == "" {
			continue
		}
		f := func(v float64) string { return Group(fmt.Sprintf(r.Format, v)) }
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.Figure, f(r.Ref), f(r.Floor), f(r.Edged), Ratio(r.Floor, r.Ref), Ratio(r.Edged, r.Floor))
	}
}

// Ratio formats a / b with three significant figures or so ("2.35x",
// "780x", "2,300x"); "-" when b is 0.
func Ratio(a, b float64) string {
	switch r := a / b; {
	case b == 0:
		return "-"
	case r >= 100:
		return Group(fmt.Sprintf("%.0fx", r))
	case r >= 10:
		return fmt.Sprintf("%.1fx", r)
	default:
		return fmt.Sprintf("%.2fx", r)
	}
}

// Group puts thousands separators into the leading integer of s
// ("14400 msg/s" -> "14,400 msg/s").
func Group(s string) string {
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	if end <= 3 {
		return s
	}
	var b strings.Builder
	for i, c := range s[:end] {
		if i > 0 && (end-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String() + s[end:]
}

package sensors

import "log/slog"

// LogOrDiscard returns log, or a logger that drops everything when log is
// nil: the one default of every constructor that takes an optional
// *slog.Logger.
func LogOrDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}

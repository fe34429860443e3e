package control

// ShareMap is sim_test.go's sim.Sharer, for the external tests.
type ShareMap = shareMap

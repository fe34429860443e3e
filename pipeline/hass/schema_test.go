package hass

import (
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/pipeline/control"
	"github.com/edged/edged/sensors"
)

// The schemas below are Home Assistant's documented MQTT configuration
// variables (home-assistant.io, source/_integrations/sensor.mqtt.markdown,
// binary_sensor.mqtt.markdown, climate.mqtt.markdown, and mqtt.markdown
// for the discovery payload's origin): every key with its documented
// type and whether it is required. "platform" is left out: the documents
// allow it only in device-based discovery messages, and edged sends one
// config per entity.
//
// Types: string, integer, float, boolean, list, map, template (a string
// Jinja2 renders; rendered for real in jinja_test.go), device_class and
// icon (strings), and "string|list" (identifiers).
type field struct {
	typ      string
	required bool
}

var (
	// commonKeys are documented for every entity platform.
	commonKeys = map[string]field{
		"availability":             {typ: "list"},
		"availability_mode":        {typ: "string"},
		"availability_template":    {typ: "template"},
		"availability_topic":       {typ: "string"},
		"device":                   {typ: "map"},
		"enabled_by_default":       {typ: "boolean"},
		"encoding":                 {typ: "string"},
		"entity_category":          {typ: "string"},
		"entity_picture":           {typ: "string"},
		"icon":                     {typ: "icon"},
		"json_attributes_template": {typ: "template"},
		"json_attributes_topic":    {typ: "string"},
		"name":                     {typ: "string"},
		"object_id":                {typ: "string"},
		"payload_available":        {typ: "string"},
		"payload_not_available":    {typ: "string"},
		"qos":                      {typ: "integer"},
		"unique_id":                {typ: "string"},
		// mqtt.markdown, "Discovery payload": recommended for every
		// discovered item.
		"origin": {typ: "map"},
	}
	sensorKeys = with(commonKeys, map[string]field{
		"device_class":                {typ: "device_class"},
		"expire_after":                {typ: "integer"},
		"force_update":                {typ: "boolean"},
		"last_reset_value_template":   {typ: "template"},
		"options":                     {typ: "list"},
		"suggested_display_precision": {typ: "integer"},
		"state_class":                 {typ: "string"},
		"state_topic":                 {typ: "string", required: true},
		"unit_of_measurement":         {typ: "string"},
		"value_template":              {typ: "template"},
	})
	binarySensorKeys = with(commonKeys, map[string]field{
		"device_class":   {typ: "string"},
		"expire_after":   {typ: "integer"},
		"force_update":   {typ: "boolean"},
		"off_delay":      {typ: "integer"},
		"payload_off":    {typ: "string"},
		"payload_on":     {typ: "string"},
		"state_topic":    {typ: "string", required: true},
		"value_template": {typ: "template"},
	})
	climateKeys = with(commonKeys, map[string]field{
		"action_template":                        {typ: "template"},
		"action_topic":                           {typ: "string"},
		"current_humidity_template":              {typ: "template"},
		"current_humidity_topic":                 {typ: "string"},
		"current_temperature_template":           {typ: "template"},
		"current_temperature_topic":              {typ: "string"},
		"fan_mode_command_template":              {typ: "template"},
		"fan_mode_command_topic":                 {typ: "string"},
		"fan_mode_state_template":                {typ: "template"},
		"fan_mode_state_topic":                   {typ: "string"},
		"fan_modes":                              {typ: "list"},
		"initial":                                {typ: "float"},
		"max_humidity":                           {typ: "float"},
		"max_temp":                               {typ: "float"},
		"min_humidity":                           {typ: "float"},
		"min_temp":                               {typ: "float"},
		"mode_command_template":                  {typ: "template"},
		"mode_command_topic":                     {typ: "string"},
		"mode_state_template":                    {typ: "template"},
		"mode_state_topic":                       {typ: "string"},
		"modes":                                  {typ: "list"},
		"optimistic":                             {typ: "boolean"},
		"payload_off":                            {typ: "string"},
		"payload_on":                             {typ: "string"},
		"power_command_template":                 {typ: "template"},
		"power_command_topic":                    {typ: "string"},
		"precision":                              {typ: "float"},
		"preset_mode_command_template":           {typ: "template"},
		"preset_mode_command_topic":              {typ: "string"},
		"preset_mode_state_topic":                {typ: "string"},
		"preset_mode_value_template":             {typ: "template"},
		"preset_modes":                           {typ: "list"},
		"retain":                                 {typ: "boolean"},
		"swing_horizontal_mode_command_template": {typ: "template"},
		"swing_horizontal_mode_command_topic":    {typ: "string"},
		"swing_horizontal_mode_state_template":   {typ: "template"},
		"swing_horizontal_mode_state_topic":      {typ: "string"},
		"swing_horizontal_modes":                 {typ: "list"},
		"swing_mode_command_template":            {typ: "template"},
		"swing_mode_command_topic":               {typ: "string"},
		"swing_mode_state_template":              {typ: "template"},
		"swing_mode_state_topic":                 {typ: "string"},
		"swing_modes":                            {typ: "list"},
		"target_humidity_command_template":       {typ: "template"},
		"target_humidity_command_topic":          {typ: "string"},
		"target_humidity_state_template":         {typ: "template"},
		"target_humidity_state_topic":            {typ: "string"},
		"temp_step":                              {typ: "float"},
		"temperature_command_template":           {typ: "template"},
		"temperature_command_topic":              {typ: "string"},
		"temperature_high_command_template":      {typ: "template"},
		"temperature_high_command_topic":         {typ: "string"},
		"temperature_high_state_template":        {typ: "template"},
		"temperature_high_state_topic":           {typ: "string"},
		"temperature_low_command_template":       {typ: "template"},
		"temperature_low_command_topic":          {typ: "string"},
		"temperature_low_state_template":         {typ: "template"},
		"temperature_low_state_topic":            {typ: "string"},
		"temperature_state_template":             {typ: "template"},
		"temperature_state_topic":                {typ: "string"},
		"temperature_unit":                       {typ: "string"},
		"value_template":                         {typ: "template"},
	})
	deviceKeys = map[string]field{
		"configuration_url": {typ: "string"},
		"connections":       {typ: "list"},
		"hw_version":        {typ: "string"},
		"identifiers":       {typ: "string|list"},
		"manufacturer":      {typ: "string"},
		"model":             {typ: "string"},
		"model_id":          {typ: "string"},
		"name":              {typ: "string"},
		"serial_number":     {typ: "string"},
		"suggested_area":    {typ: "string"},
		"sw_version":        {typ: "string"},
		"via_device":        {typ: "string"},
	}
	availabilityKeys = map[string]field{
		"payload_available":     {typ: "string"},
		"payload_not_available": {typ: "string"},
		"topic":                 {typ: "string", required: true},
		"value_template":        {typ: "template"},
	}
	originKeys = map[string]field{
		"name":        {typ: "string", required: true},
		"sw_version":  {typ: "string"},
		"support_url": {typ: "string"},
	}
	schemas = map[string]map[string]field{
		"sensor":        sensorKeys,
		"binary_sensor": binarySensorKeys,
		"climate":       climateKeys,
	}

	// Documented values. Sensor device classes with their units
	// (sensor.markdown), binary sensor device classes
	// (binary_sensor.markdown), state classes (the developer docs),
	// climate modes ("a subset of the default values") and precisions.
	sensorUnits = map[string][]string{
		"temperature": {"°C", "°F", "K"},
		"humidity":    {"%"},
		"illuminance": {"lx"},
		"pressure":    {"Pa", "kPa", "hPa", "bar", "cbar", "mbar", "mmHg", "inHg", "psi"},
		"voltage":     {"V", "mV", "µV", "kV", "MV"},
	}
	binarySensorClasses = []string{"battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
		"garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug",
		"power", "presence", "problem", "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window"}
	stateClasses      = []string{"measurement", "total", "total_increasing"}
	availabilityModes = []string{"all", "any", "latest"}
	climateModes      = []string{"auto", "off", "cool", "heat", "dry", "fan_only"}
	climatePrecisions = []float64{0.1, 0.5, 1.0}
	entityCategories  = []string{"config", "diagnostic"}
	// The discovery topic: <prefix>/<component>/[<node_id>/]<object_id>/config,
	// ids of [a-zA-Z0-9_-].
	discoveryTopic = regexp.MustCompile(`^homeassistant/(sensor|binary_sensor|climate)/([a-zA-Z0-9_-]+/)?[a-zA-Z0-9_-]+/config$`)
)

func with(base, extra map[string]field) map[string]field {
	m := map[string]field{}
	for k, v := range base {
		m[k] = v
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func ptr(v float64) *float64 { return &v }

// testGateway has every quantity, heating and cooling loops (PID and
// hysteresis), a humidity loop, and an uplink.
func testGateway() Gateway {
	poll := sensors.DefaultPollOpts()
	heat := control.DefaultOpts()
	heat.ID, heat.Input, heat.Output, heat.Setpoint = "heat", "air/temperature", "heater", 21
	heat.SetpointMin, heat.SetpointMax = ptr(5), ptr(30)
	heat.PID = control.Gains{Kp: 0.4, Ki: 0.002}
	cool := control.DefaultOpts()
	cool.ID, cool.Input, cool.Output, cool.Setpoint = "cool", "air/temperature", "fan", 25
	cool.PID = control.Gains{Kp: -0.5}
	hyst := control.DefaultOpts()
	hyst.ID, hyst.Input, hyst.Output, hyst.Setpoint = "fridge", "box/temperature", "compressor", 4
	hyst.Hysteresis, hyst.Action = &control.Band{Below: 0.5, Above: 0.5}, control.ActionReverse
	hum := control.DefaultOpts()
	hum.ID, hum.Input, hum.Output, hum.Setpoint = "mist", "air/humidity", "mister", 70
	hum.PID = control.Gains{Kp: 0.1}
	return Gateway{
		ID: "gh-01", Name: "Greenhouse", TopicPrefix: "edged/gh-01", Version: "v1.2.3",
		ConfigurationURL: "http://greenhouse.local:8080/",
		Sensors: []Sensor{
			{ID: "air", Name: "Air", Quantities: []sensors.Quantity{sensors.Temperature, sensors.Humidity}, Poll: poll},
			{ID: "box", Quantities: []sensors.Quantity{sensors.Temperature}, Poll: poll},
			{ID: "baro", Quantities: []sensors.Quantity{sensors.Pressure}, Poll: poll},
			{ID: "light", Quantities: []sensors.Quantity{sensors.Illuminance, sensors.Voltage}, Poll: poll},
			{ID: "valve", Quantities: []sensors.Quantity{sensors.Level}, Poll: poll},
		},
		Controllers: []control.Opts{heat, cool, hyst, hum},
		Uplink:      true,
	}
}

func decode(t *testing.T, e Entity) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(e.Payload))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%s: payload is not a JSON object: %v\n%s", e.Topic, err, e.Payload)
	}
	return m
}

// checkKeys checks m against schema: every key known, of its type, and
// every required key present. It returns the problems.
func checkKeys(where string, m map[string]any, schema map[string]field) []string {
	var errs []string
	for k, v := range m {
		f, ok := schema[k]
		if !ok {
			errs = append(errs, where+": key "+k+" is not in Home Assistant's schema")
			continue
		}
		if !hasType(v, f.typ) {
			errs = append(errs, where+": "+k+" is not of type "+f.typ)
		}
	}
	for k, f := range schema {
		if _, ok := m[k]; f.required && !ok {
			errs = append(errs, where+": required key "+k+" is missing")
		}
	}
	return errs
}

func hasType(v any, typ string) bool {
	switch typ {
	case "string", "template", "device_class", "icon":
		_, ok := v.(string)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := n.Int64()
		return err == nil
	case "float":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := n.Float64()
		return err == nil
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "list":
		_, ok := v.([]any)
		return ok
	case "map":
		_, ok := v.(map[string]any)
		return ok
	case "string|list":
		return hasType(v, "string") || hasType(v, "list")
	}
	return false
}

func TestPayloadsMatchHomeAssistantSchema(t *testing.T) {
	g := testGateway()
	ents, err := Entities(DefaultOpts(), g)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	uniq := map[string]string{}
	for _, e := range ents {
		counts[e.Component]++
		schema, ok := schemas[e.Component]
		if !ok {
			t.Fatalf("%s: component %q has no schema here", e.Topic, e.Component)
		}
		if !discoveryTopic.MatchString(e.Topic) || !strings.HasPrefix(e.Topic, "homeassistant/"+e.Component+"/gh-01/") {
			t.Errorf("%s: not a discovery topic <prefix>/%s/<node_id>/<object_id>/config", e.Topic, e.Component)
		}
		m := decode(t, e)
		for _, p := range checkKeys(e.Topic, m, schema) {
			t.Error(p)
		}
		// The device registry needs a unique_id, and identifiers or
		// connections; availability and availability_topic exclude
		// each other.
		id, _ := m["unique_id"].(string)
		if id == "" {
			t.Errorf("%s: no unique_id: Home Assistant ties an entity to its device only with one", e.Topic)
		} else if other, dup := uniq[id]; dup {
			t.Errorf("%s: unique_id %q is also %s's", e.Topic, id, other)
		}
		uniq[id] = e.Topic
		if _, both := m["availability_topic"]; both && m["availability"] != nil {
			t.Errorf("%s: availability and availability_topic must not be used together", e.Topic)
		}
		dev, _ := m["device"].(map[string]any)
		for _, p := range checkKeys(e.Topic+" device", dev, deviceKeys) {
			t.Error(p)
		}
		if ids, _ := dev["identifiers"].([]any); len(ids) == 0 {
			t.Errorf("%s: device has no identifiers", e.Topic)
		}
		if u, _ := dev["configuration_url"].(string); u != g.ConfigurationURL {
			t.Errorf("%s: configuration_url %q, want %q", e.Topic, u, g.ConfigurationURL)
		}
		if dev["name"] != "Greenhouse" || dev["sw_version"] != "v1.2.3" || dev["model"] == nil {
			t.Errorf("%s: device %v: want name, model and sw_version", e.Topic, dev)
		}
		org, _ := m["origin"].(map[string]any)
		for _, p := range checkKeys(e.Topic+" origin", org, originKeys) {
			t.Error(p)
		}
		avs, _ := m["availability"].([]any)
		if len(avs) == 0 || avs[0].(map[string]any)["topic"] != "edged/gh-01/status" {
			t.Errorf("%s: availability %v does not start with the gateway's status", e.Topic, m["availability"])
		}
		for i, a := range avs {
			am, _ := a.(map[string]any)
			for _, p := range checkKeys(e.Topic+" availability", am, availabilityKeys) {
				t.Errorf("[%d] %s", i, p)
			}
		}
		if mode, ok := m["availability_mode"].(string); ok && !slices.Contains(availabilityModes, mode) {
			t.Errorf("%s: availability_mode %q", e.Topic, mode)
		}
		if c, ok := m["entity_category"].(string); ok && (!slices.Contains(entityCategories, c) || e.Component != "climate" && c != "diagnostic") {
			t.Errorf("%s: entity_category %q (sensors take only diagnostic)", e.Topic, c)
		}
		switch e.Component {
		case "sensor":
			checkSensor(t, e, m)
		case "binary_sensor":
			if c := m["device_class"]; !slices.Contains(binarySensorClasses, c.(string)) {
				t.Errorf("%s: device_class %v", e.Topic, c)
			}
		case "climate":
			checkClimate(t, e, m)
		}
	}
	// 7 quantities + the backlog; heat, cool and fridge (mist's input is
	// humidity: no climate); the uplink's connection.
	if counts["sensor"] != 8 || counts["climate"] != 3 || counts["binary_sensor"] != 1 {
		t.Errorf("announced %v, want 7 sensors, 3 climates, 1 binary_sensor", counts)
	}
}

// TestSchemaCheckCatches keeps the checker honest: an unknown key, a
// wrong type and a missing required key are each reported.
func TestSchemaCheckCatches(t *testing.T) {
	dec := json.NewDecoder(strings.NewReader(`{"state_topic": 1, "expire_after": 2.5, "stat_t": "x"}`))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(checkKeys("x", m, sensorKeys), "\n")
	for _, want := range []string{"state_topic is not of type string", "expire_after is not of type integer", "key stat_t is not in"} {
		if !strings.Contains(got, want) {
			t.Errorf("checker missed %q:\n%s", want, got)
		}
	}
	if p := checkKeys("x", map[string]any{}, binarySensorKeys); len(p) != 1 || !strings.Contains(p[0], "required key state_topic") {
		t.Errorf("missing state_topic: %v", p)
	}
}

func checkSensor(t *testing.T, e Entity, m map[string]any) {
	t.Helper()
	if sc := m["state_class"]; !slices.Contains(stateClasses, sc.(string)) {
		t.Errorf("%s: state_class %v", e.Topic, sc)
	}
	class, hasClass := m["device_class"].(string)
	unit, _ := m["unit_of_measurement"].(string)
	if hasClass && !slices.Contains(sensorUnits[class], unit) {
		t.Errorf("%s: device_class %q with unit %q: Home Assistant takes %v", e.Topic, class, unit, sensorUnits[class])
	}
	if strings.Contains(e.Topic, "/uplink_backlog/") {
		if m["state_topic"] != "edged/gh-01/uplink/state" {
			t.Errorf("%s: state_topic %v", e.Topic, m["state_topic"])
		}
		return
	}
	// A reading's sensor: its reading topic, both availabilities, all of
	// them needed.
	st, _ := m["state_topic"].(string)
	sensorID, q, _ := strings.Cut(strings.TrimPrefix(st, "edged/gh-01/sensor/"), "/")
	if !strings.HasSuffix(e.Topic, "/"+sensorID+"_"+q+"/config") {
		t.Errorf("%s: state_topic %q is another sensor's", e.Topic, st)
	}
	avs := m["availability"].([]any)
	if len(avs) != 2 || avs[1].(map[string]any)["topic"] != "edged/gh-01/sensor/"+sensorID+"/availability" || m["availability_mode"] != "all" {
		t.Errorf("%s: availability %v mode %v: want the status and the sensor's availability, all", e.Topic, avs, m["availability_mode"])
	}
	// Default poll options (see TestExpireAfter).
	if n, ok := m["expire_after"].(json.Number); !ok || n.String() != "55" {
		t.Errorf("%s: expire_after %v, want 55", e.Topic, m["expire_after"])
	}
}

func checkClimate(t *testing.T, e Entity, m map[string]any) {
	t.Helper()
	modes, _ := m["modes"].([]any)
	for _, md := range modes {
		if !slices.Contains(climateModes, md.(string)) {
			t.Errorf("%s: mode %v is not one of Home Assistant's %v", e.Topic, md, climateModes)
		}
	}
	if u := m["temperature_unit"]; u != "C" && u != "F" {
		t.Errorf("%s: temperature_unit %v", e.Topic, u)
	}
	p, _ := m["precision"].(json.Number).Float64()
	if !slices.Contains(climatePrecisions, p) {
		t.Errorf("%s: precision %v", e.Topic, p)
	}
	id := strings.Split(e.Topic, "/")[3]
	want := map[string]struct {
		modes    []any
		min, max any
	}{
		"heat":   {[]any{"off", "heat"}, json.Number("5"), json.Number("30")},
		"cool":   {[]any{"off", "cool"}, nil, nil},
		"fridge": {[]any{"off", "cool"}, nil, nil},
	}[id]
	if !slices.Equal(modes, want.modes) || m["min_temp"] != want.min || m["max_temp"] != want.max {
		t.Errorf("%s: modes %v min %v max %v, want %v %v %v", e.Topic, modes, m["min_temp"], m["max_temp"], want.modes, want.min, want.max)
	}
	for _, k := range []string{"mode_command_topic", "temperature_command_topic"} {
		if m[k] != "edged/gh-01/control/"+id+"/set" {
			t.Errorf("%s: %s %v", e.Topic, k, m[k])
		}
	}
	for _, k := range []string{"mode_state_topic", "temperature_state_topic", "current_temperature_topic", "action_topic"} {
		if m[k] != "edged/gh-01/control/"+id+"/state" {
			t.Errorf("%s: %s %v", e.Topic, k, m[k])
		}
	}
}

func TestDisabledAnnouncesNothing(t *testing.T) {
	o := DefaultOpts()
	o.Enabled = false
	a, err := New(o, testGateway(), nil, t.TempDir(), sensors.SystemClock, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(a.Entities()); n != 0 {
		t.Errorf("disabled: %d entities", n)
	}
}

func TestOptsValidate(t *testing.T) {
	for _, tt := range []struct {
		o    Opts
		want string
	}{
		{DefaultOpts(), ""},
		{Opts{Enabled: true}, "prefix: must not be empty"},
		{Opts{Enabled: true, Prefix: "ha", ConfigurationURL: "greenhouse.local:8080"}, "configuration_url"},
		{Opts{Enabled: true, Prefix: "ha", ConfigurationURL: "ftp://x/"}, "configuration_url"},
		{Opts{Enabled: true, Prefix: "ha", ConfigurationURL: "https://gh.example/edged/"}, ""},
	} {
		err := tt.o.Validate()
		if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: Validate() = %v, want %q", tt.o, err, tt.want)
		}
	}
}

func TestExpireAfter(t *testing.T) {
	d := func(s string) *time.Duration {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return &v
	}
	f := func(v float64) *float64 { return &v }
	simAir := sensors.PollOpts{Interval: 5 * time.Second, Timeout: 2 * time.Second, OfflineAfter: 3, Filters: []sensors.FilterSpec{
		{Offset: f(-0.2), Quantity: sensors.Temperature}, {Median: &sensors.WindowOpts{Window: 3}}, {Heartbeat: d("1m")}}}
	simLight := sensors.PollOpts{Interval: 10 * time.Second, OfflineAfter: 3, Filters: []sensors.FilterSpec{
		{SlidingWindowAverage: &sensors.WindowOpts{Window: 6, SendEvery: 3}}, {Delta: f(50)}, {Heartbeat: d("5m")}}}
	for _, tt := range []struct {
		name string
		p    sensors.PollOpts
		q    sensors.Quantity
		gap  time.Duration
		exp  int // seconds; 0: none
	}{
		// Every sample publishes: 2 x 10 s + 3 x 10 s + 5 s.
		{"defaults", sensors.DefaultPollOpts(), sensors.Temperature, 10 * time.Second, 55},
		// The sim example's air: 2 x 5 s + 3 x 5 s + 2 s.
		{"sim air", simAir, sensors.Temperature, 5 * time.Second, 27},
		// The sim example's light: the heartbeat bounds the delta at
		// 5 min + one sample: 2 x 310 s + 3 x 10 s + 5 s.
		{"sim light", simLight, sensors.Illuminance, 310 * time.Second, 655},
		{"delta alone", sensors.PollOpts{Interval: time.Second, OfflineAfter: 1, Filters: []sensors.FilterSpec{{Delta: f(1)}}}, sensors.Voltage, 0, 0},
		// A delta on another quantity does not hold this one.
		{"delta elsewhere", sensors.PollOpts{Interval: time.Second, OfflineAfter: 1, Filters: []sensors.FilterSpec{{Delta: f(1), Quantity: sensors.Humidity}}}, sensors.Temperature, time.Second, 4},
		// A throttle: at most one value per 30 s, one sample late at worst.
		{"throttle", sensors.PollOpts{Interval: 10 * time.Second, OfflineAfter: 2, Filters: []sensors.FilterSpec{{Throttle: d("30s")}}}, sensors.Temperature, 40 * time.Second, 105},
	} {
		gap, ok := PublishGap(tt.p, tt.q)
		if ok != (tt.exp != 0) || ok && gap != tt.gap {
			t.Errorf("%s: PublishGap = %v, %v; want %v, %v", tt.name, gap, ok, tt.gap, tt.exp != 0)
		}
		exp, ok := ExpireAfter(tt.p, tt.q)
		if ok != (tt.exp != 0) || ok && exp != time.Duration(tt.exp)*time.Second {
			t.Errorf("%s: ExpireAfter = %v, %v; want %ds", tt.name, exp, ok, tt.exp)
		}
	}
}

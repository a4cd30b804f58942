package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// Controller is what the /api/v1 routes that change things act on:
// *loadbalancer.Balancer. A Source that is not one gets the read-only routes.
type Controller interface {
	Source
	// Config returns the config in force (GET /api/v1/config).
	Config() *config.Config
	// Plan returns what ApplyFrom would change, changing nothing (a dry run).
	Plan(cfg *config.Config) (loadbalancer.Diff, error)
	// ApplyFrom makes cfg, from source, the running config, all or nothing.
	ApplyFrom(source string, cfg *config.Config) (loadbalancer.Diff, error)
	// DrainBackend stops new connections to backend id; open ones finish.
	DrainBackend(id int) (backend.Snapshot, error)
	// DisableBackend stops new connections to backend id and closes the
	// open ones after the drain timeout.
	DisableBackend(id int) (backend.Snapshot, error)
	// EnableBackend clears every override of backend id.
	EnableBackend(id int) (backend.Snapshot, error)
	// SetBackendWeight overrides the weight of backend id.
	SetBackendWeight(id, weight int) (backend.Snapshot, error)
}

var _ Controller = (*loadbalancer.Balancer)(nil)

// FleetController is a Controller whose overrides can also be made
// fleet-wide, with ?scope=fleet: recorded where every balancer of the fleet
// applies them (the CLI's balancer with discovery.etcd; package fleet).
type FleetController interface {
	Controller
	// SetFleetOverride records for the fleet the action ("drain",
	// "disable", "enable" or "weight", with weight) on the backend named
	// name. "enable" clears the fleet's override of it.
	SetFleetOverride(ctx context.Context, name, action string, weight int) error
}

// Backend actions, as SetFleetOverride takes them.
const (
	ActionDrain   = "drain"
	ActionDisable = "disable"
	ActionEnable  = "enable"
	ActionWeight  = "weight"
)

// MaxBodyBytes bounds a request body; a larger one is answered 413.
const MaxBodyBytes = 1 << 20

// Redacted stands for admin.token in GET /api/v1/config. Posted back
// unchanged, it keeps the running token, so a config read, edited and posted
// round-trips without the secret ever being shown.
const Redacted = "<redacted>"

// configFormats maps the Content-Types POST /api/v1/config takes to
// config.Parse's formats.
var configFormats = map[string]string{
	"application/json":   "json",
	"application/yaml":   "yaml",
	"application/x-yaml": "yaml",
	"text/yaml":          "yaml",
	"text/x-yaml":        "yaml",
	"application/toml":   "toml",
}

// tokenOf is the admin token src requires: its config's admin.token, read
// once when the admin server starts, like admin.listen_address.
func tokenOf(src Source) string {
	if c, ok := src.(Controller); ok {
		return c.Config().Admin.Token
	}
	return ""
}

// registerAPI adds the /api/v1 routes for src to mux.
func registerAPI(mux *http.ServeMux, src Source) {
	mux.HandleFunc("GET /api/v1/status", status(src))
	ctl, ok := src.(Controller)
	if !ok {
		return
	}
	a := api{ctl}
	mux.HandleFunc("GET /api/v1/config", a.getConfig)
	mux.HandleFunc("POST /api/v1/config", a.postConfig)
	mux.HandleFunc("POST /api/v1/backends/{id}/drain", a.backend(ActionDrain, ctl.DrainBackend))
	mux.HandleFunc("POST /api/v1/backends/{id}/disable", a.backend(ActionDisable, ctl.DisableBackend))
	mux.HandleFunc("POST /api/v1/backends/{id}/enable", a.backend(ActionEnable, ctl.EnableBackend))
	mux.HandleFunc("DELETE /api/v1/backends/{id}/override", a.backend(ActionEnable, ctl.EnableBackend))
	mux.HandleFunc("PUT /api/v1/backends/{id}/weight", a.putWeight)
}

// status serves the balancer's Snapshot (GET /status, GET /api/v1/status).
func status(src Source) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, src.Snapshot()) }
}

type api struct{ ctl Controller }

func (a api) getConfig(w http.ResponseWriter, r *http.Request) {
	c := *a.ctl.Config() // a copy: the running config is shared
	if c.Admin.Token != "" {
		c.Admin.Token = Redacted
	}
	if c.Discovery.Etcd.Password != "" {
		c.Discovery.Etcd.Password = Redacted
	}
	writeJSON(w, http.StatusOK, c)
}

// ConfigResult is the answer to POST /api/v1/config: what changed, or with
// dry_run what would.
type ConfigResult struct {
	DryRun  bool              `json:"dry_run"` // true: a dry run, nothing was changed
	Changes loadbalancer.Diff `json:"changes"`
	Summary []string          `json:"summary"` // Changes, one line each (Diff.Summary)
}

func (a api) postConfig(w http.ResponseWriter, r *http.Request) {
	dryRun := false
	for key, values := range r.URL.Query() {
		if key != "dry_run" {
			writeError(w, http.StatusBadRequest, "unknown query parameter %q (the only one is dry_run)", key)
			return
		}
		var err error
		if dryRun, err = strconv.ParseBool(values[0]); err != nil || len(values) > 1 {
			writeError(w, http.StatusBadRequest, "dry_run=%q: want true or false, once", strings.Join(values, ","))
			return
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		readError(w, err)
		return
	}
	cfg, code, err := parseConfig(r.Header.Get("Content-Type"), body)
	if err != nil {
		var verr *config.ValidationError
		if errors.As(err, &verr) {
			writeJSON(w, code, errorBody{Error: err.Error(), Problems: verr.Problems})
			return
		}
		writeError(w, code, "%v", err)
		return
	}
	if running := a.ctl.Config().Discovery.Etcd.Password; cfg.Discovery.Etcd.Password == Redacted && running != "" {
		cfg.Discovery.Etcd.Password = running
	}
	if running := a.ctl.Config().Admin.Token; cfg.Admin.Token == Redacted && running != "" {
		cfg.Admin.Token = running
	}
	var d loadbalancer.Diff
	if dryRun {
		d, err = a.ctl.Plan(cfg)
	} else {
		d, err = a.ctl.ApplyFrom(loadbalancer.SourceAPI, cfg)
	}
	switch {
	case errors.Is(err, loadbalancer.ErrStopped):
		writeError(w, http.StatusServiceUnavailable, "%v", err)
	case err != nil: // valid, but the running system refused it (a listen address taken): nothing changed
		writeError(w, http.StatusConflict, "%v", err)
	default:
		writeJSON(w, http.StatusOK, ConfigResult{DryRun: dryRun, Changes: d, Summary: d.Summary()})
	}
}

// parseConfig reads a whole config posted as contentType, validated exactly
// as a config file is (config.Parse, without the environment: what is posted
// is what runs). The status is the one to answer an error with.
func parseConfig(contentType string, body []byte) (*config.Config, int, error) {
	media, _, err := mime.ParseMediaType(contentType)
	format, ok := configFormats[strings.ToLower(media)]
	if err != nil || !ok {
		types := make([]string, 0, len(configFormats))
		for t := range configFormats {
			types = append(types, t)
		}
		sort.Strings(types)
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("Content-Type %q: want one of %s", contentType, strings.Join(types, ", "))
	}
	cfg, err := config.Parse(body, format, "body")
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	return cfg, http.StatusOK, nil
}

// backend serves a POST or DELETE on /api/v1/backends/{id}/…: change the
// backend (on every balancer first, with ?scope=fleet), answer its state.
func (a api) backend(action string, change func(id int) (backend.Snapshot, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := backendID(w, r)
		if !ok || !a.fleetScope(w, r, id, action, 0) {
			return
		}
		s, err := change(id)
		answer(w, s, err)
	}
}

// fleetTimeout bounds a fleet-wide change's write to the fleet.
const fleetTimeout = 5 * time.Second

// fleetScope reads ?scope= (local, the default, or fleet) and, for fleet,
// records the action for every balancer. It reports whether the local
// change may go on; if not, it answered.
func (a api) fleetScope(w http.ResponseWriter, r *http.Request, id int, action string, weight int) bool {
	switch scope := r.URL.Query().Get("scope"); scope {
	case "", "local":
		return true
	case "fleet":
	default:
		writeError(w, http.StatusBadRequest, "scope %q: want local (the default) or fleet", scope)
		return false
	}
	fc, ok := a.ctl.(FleetController)
	if !ok {
		writeError(w, http.StatusBadRequest, "scope=fleet: this balancer is in no fleet (discovery.etcd.endpoints is not set)")
		return false
	}
	i := slices.IndexFunc(a.ctl.Config().Backends, func(b config.Backend) bool { return b.ID == id })
	if i < 0 {
		writeError(w, http.StatusNotFound, "%v: no backend has id %d", loadbalancer.ErrUnknownBackend, id)
		return false
	}
	if action == ActionWeight && (weight < config.MinWeight || weight > config.MaxWeight) {
		return true // the local change answers the bad weight
	}
	ctx, cancel := context.WithTimeout(r.Context(), fleetTimeout)
	defer cancel()
	if err := fc.SetFleetOverride(ctx, a.ctl.Config().Backends[i].Name, action, weight); err != nil {
		writeError(w, http.StatusServiceUnavailable, "scope=fleet: the fleet's override was not recorded, nothing changed: %v", err)
		return false
	}
	return true
}

func (a api) putWeight(w http.ResponseWriter, r *http.Request) {
	id, ok := backendID(w, r)
	if !ok {
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		readError(w, err)
		return
	}
	weight, err := parseWeight(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if !a.fleetScope(w, r, id, ActionWeight, weight) {
		return
	}
	s, err := a.ctl.SetBackendWeight(id, weight)
	answer(w, s, err)
}

// parseWeight reads {"weight": N}; the bounds are the balancer's to check.
func parseWeight(body []byte) (int, error) {
	const want = `{"weight": N}`
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req struct {
		Weight *int `json:"weight"`
	}
	if err := dec.Decode(&req); err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typeErr) && typeErr.Field == "weight":
			return 0, fmt.Errorf("weight: want a whole number, got a JSON %s", typeErr.Value)
		case errors.Is(err, io.EOF):
			return 0, fmt.Errorf("empty body: want %s", want)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return 0, fmt.Errorf("unknown key %s: want %s", strings.TrimPrefix(err.Error(), "json: unknown field "), want)
		}
		return 0, fmt.Errorf("body is not %s: %v", want, err)
	}
	if dec.InputOffset() < int64(len(bytes.TrimRight(body, " \t\r\n"))) {
		return 0, fmt.Errorf("body has more than one JSON value: want %s", want)
	}
	if req.Weight == nil {
		return 0, fmt.Errorf("weight is missing: want %s", want)
	}
	return *req.Weight, nil
}

// backendID reads the {id} of the path, answering 400 when it is not one.
func backendID(w http.ResponseWriter, r *http.Request) (int, bool) {
	raw := r.PathValue("id")
	id, err := strconv.Atoi(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, "backend id %q: want an integer (the backend's id in the config)", raw)
		return 0, false
	}
	return id, true
}

// answer writes a backend's state, or the error with its status.
func answer(w http.ResponseWriter, s backend.Snapshot, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, s)
	case errors.Is(err, loadbalancer.ErrUnknownBackend):
		writeError(w, http.StatusNotFound, "%v", err)
	case errors.Is(err, loadbalancer.ErrConflict):
		writeError(w, http.StatusConflict, "%v", err)
	case errors.Is(err, loadbalancer.ErrInvalidWeight):
		writeError(w, http.StatusBadRequest, "%v", err)
	case errors.Is(err, loadbalancer.ErrStopped):
		writeError(w, http.StatusServiceUnavailable, "%v", err)
	default:
		writeError(w, http.StatusInternalServerError, "%v", err)
	}
}

// readError answers a body that could not be read: too large (413) or cut
// off (400).
func readError(w http.ResponseWriter, err error) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, "request body larger than %d bytes", tooLarge.Limit)
		return
	}
	writeError(w, http.StatusBadRequest, "reading the request body: %v", err)
}

// errorBody is every error answer: the error, and for an invalid config
// each problem.
type errorBody struct {
	Error    string   `json:"error"`
	Problems []string `json:"problems,omitempty"`
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, errorBody{Error: fmt.Sprintf(format, args...)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "<redacted>", "→" read as they are
	enc.Encode(v)
}

// guard wraps every admin route: it bounds request bodies and, when token
// is set, requires it as a bearer token on everything but GET /health (a
// liveness probe carries no secret); the dashboard's page is served before
// it (dashboard.go) and holds no data.
func guard(token string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxBodyBytes {
			writeError(w, http.StatusRequestEntityTooLarge, "request body larger than %d bytes", MaxBodyBytes)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		health := r.URL.Path == "/health" && (r.Method == http.MethodGet || r.Method == http.MethodHead)
		if token != "" && !health {
			if msg := authorize(r.Header.Get("Authorization"), want); msg != "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="lemonade admin"`)
				writeError(w, http.StatusUnauthorized, "%s", msg)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// authorize checks an Authorization header against the token's hash and
// says what is wrong, or "". Comparing hashes in constant time tells a
// caller nothing about the token, not even its length.
func authorize(header string, want [sha256.Size]byte) string {
	scheme, cred, _ := strings.Cut(header, " ")
	if header == "" || !strings.EqualFold(scheme, "Bearer") {
		return "admin token required: send Authorization: Bearer <admin.token>"
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(cred)))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return "wrong admin token"
	}
	return ""
}

// jsonErrors answers what mux has no route for as JSON: 404, or 405 with
// the Allow header the mux computed.
func jsonErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &headerRecorder{header: http.Header{}, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusMethodNotAllowed:
			allow := rec.header.Get("Allow")
			w.Header().Set("Allow", allow)
			writeError(w, rec.status, "method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)
		case http.StatusNotFound:
			writeError(w, rec.status, "no such endpoint: %s %s", r.Method, r.URL.Path)
		default: // a redirect to the clean path: pass it on as the mux made it
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
		}
	})
}

// headerRecorder keeps the header and status a handler writes and drops
// its body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(p []byte) (int, error) { return len(p), nil }
func (h *headerRecorder) WriteHeader(status int)      { h.status = status }

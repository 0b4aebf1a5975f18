// Command helm-render renders a Helm chart the way `helm template` does,
// without helm: the templates through Go's text/template with the sprig
// function map and Helm's own functions (include, tpl, required, fail,
// toYaml, fromYaml, toJson, fromJson, lookup), the chart's values.yaml
// coalesced with the user's values (-f files, then --set), and those values
// checked against values.schema.json before anything is rendered. It uses
// the libraries Helm 3 uses for each part: sprig v3, sigs.k8s.io/yaml and
// gojsonschema (Debian packages them; scripts/render-chart.ts builds this
// program with them in GOPATH mode).
//
// Usage:
//
//	helm-render [-f VALUES.yaml]... [--set KEY=VALUE]... [--name RELEASE]
//	            [--namespace NS] [--include-crds] [--output yaml|json] CHART_DIR
//
// --output yaml (the default) prints what helm template prints: each
// document after "---" and "# Source: CHART/PATH", in Helm's install order
// of kinds. --output json prints {"manifests": [{"source", "content"}],
// "notes": "..."} for programs (scripts/render-chart.ts). Errors go to
// stderr with exit status 1; values that fail the schema are listed one per
// line by their path (`bgp.neighbors.0.address: ...`).
//
// Not done (the xlb chart needs none of it): subcharts and dependencies,
// .helmignore, hooks (rendered as ordinary manifests, as helm template
// does), a cluster's capabilities (a fixed Kubernetes version is assumed)
// and lookup (always an empty map, as in helm template). Documents that
// hold only comments are left out.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"github.com/xeipuuv/gojsonschema"
	"sigs.k8s.io/yaml"
)

// kubeVersion is what .Capabilities.KubeVersion says: there is no cluster to ask.
const kubeVersion = "v1.30.0"

// installOrder is the order in which Helm installs kinds; kinds not listed
// come after these, by name.
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
	"PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
	"PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
	"ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding",
	"RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
	"HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
}

// Metadata is Chart.yaml, under the names templates use (.Chart.Name, .Chart.AppVersion, ...).
type Metadata struct {
	APIVersion   string            `json:"apiVersion"`
	Name         string            `json:"name"`
	Version      string            `json:"version"`
	AppVersion   string            `json:"appVersion,omitempty"`
	KubeVersion  string            `json:"kubeVersion,omitempty"`
	Description  string            `json:"description,omitempty"`
	Type         string            `json:"type,omitempty"`
	Keywords     []string          `json:"keywords,omitempty"`
	Home         string            `json:"home,omitempty"`
	Sources      []string          `json:"sources,omitempty"`
	Icon         string            `json:"icon,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Deprecated   bool              `json:"deprecated,omitempty"`
	Dependencies []interface{}     `json:"dependencies,omitempty"`
}

// Files are the chart's files outside templates/ (.Files), by path relative to the chart.
type Files map[string][]byte

// Get returns a file's content as a string, "" when there is no such file.
func (f Files) Get(name string) string { return string(f[name]) }

// GetBytes returns a file's content, nil when there is no such file.
func (f Files) GetBytes(name string) []byte { return f[name] }

// Glob returns the files whose path matches pattern (path.Match syntax).
func (f Files) Glob(pattern string) Files {
	out := Files{}
	for name, data := range f {
		if ok, _ := path.Match(pattern, name); ok {
			out[name] = data
		}
	}
	return out
}

// APIVersions are the API versions .Capabilities says the cluster serves.
type APIVersions []string

// Has tells whether an API version ("apps/v1") or a kind of one ("apps/v1/DaemonSet") is served.
func (a APIVersions) Has(v string) bool {
	for _, x := range a {
		if x == v || strings.HasPrefix(v, x+"/") {
			return true
		}
	}
	return false
}

// Chart is a chart as read from its directory.
type Chart struct {
	Meta      Metadata
	Values    map[string]interface{}
	Schema    []byte            // values.schema.json, nil without one
	Templates map[string]string // by name as Helm gives them: "<chart>/templates/<path>"
	Files     Files
	CRDs      map[string]string // crds/ files by name as Helm gives them: "<chart>/crds/<path>"
}

// Manifest is one rendered document and the template (or CRD file) it came from.
type Manifest struct {
	Source  string `json:"source"`
	Content string `json:"content"`
	kind    string
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	var valueFiles, sets stringList
	flag.Var(&valueFiles, "f", "a values file (YAML or JSON); repeatable, later files win")
	flag.Var(&valueFiles, "values", "same as -f")
	flag.Var(&sets, "set", "KEY=VALUE[,KEY=VALUE] as helm's --set; repeatable, applied after the files")
	name := flag.String("name", "release-name", "the release's name (.Release.Name)")
	namespace := flag.String("namespace", "default", "the release's namespace (.Release.Namespace)")
	includeCRDs := flag.Bool("include-crds", false, "print the chart's crds/ too, before the templates")
	output := flag.String("output", "yaml", "yaml (as helm template prints) or json")
	flag.Parse()
	if flag.NArg() != 1 || (*output != "yaml" && *output != "json") {
		fmt.Fprintln(os.Stderr, "usage: helm-render [-f VALUES]... [--set K=V]... [--name N] [--namespace NS] [--include-crds] [--output yaml|json] CHART_DIR")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), valueFiles, sets, *name, *namespace, *includeCRDs, *output); err != nil {
		fmt.Fprintln(os.Stderr, "Error: "+err.Error())
		os.Exit(1)
	}
}

func run(dir string, valueFiles, sets []string, name, namespace string, includeCRDs bool, output string) error {
	chart, err := loadChart(dir)
	if err != nil {
		return err
	}
	user := map[string]interface{}{}
	for _, f := range valueFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		vals, err := parseValues(data)
		if err != nil {
			return fmt.Errorf("%s: %v", f, err)
		}
		user = mergeMaps(user, vals)
	}
	for _, s := range sets {
		if err := applySet(user, s); err != nil {
			return fmt.Errorf("--set %s: %v", s, err)
		}
	}
	values := coalesce(user, chart.Values, "")
	if chart.Schema != nil {
		if err := validate(chart.Schema, values); err != nil {
			return err
		}
	}
	rendered, err := render(chart, values, name, namespace)
	if err != nil {
		return err
	}
	var manifests []Manifest
	if includeCRDs {
		for _, src := range sortedKeys(chart.CRDs) {
			docs, err := split(src, chart.CRDs[src])
			if err != nil {
				return err
			}
			manifests = append(manifests, docs...)
		}
	}
	notes := ""
	var fromTemplates []Manifest
	for _, src := range sortedKeys(rendered) {
		if path.Base(src) == "NOTES.txt" {
			notes = rendered[src]
			continue
		}
		docs, err := split(src, rendered[src])
		if err != nil {
			return err
		}
		fromTemplates = append(fromTemplates, docs...)
	}
	sort.SliceStable(fromTemplates, func(i, j int) bool { return kindBefore(fromTemplates[i].kind, fromTemplates[j].kind) })
	manifests = append(manifests, fromTemplates...)

	if output == "json" {
		out, err := json.MarshalIndent(map[string]interface{}{"manifests": manifests, "notes": notes}, "", "  ")
		if err != nil {
			return err
		}
		fmt.Println(string(out))
		return nil
	}
	for _, m := range manifests {
		fmt.Printf("---\n# Source: %s\n%s\n", m.Source, m.Content)
	}
	return nil
}

// loadChart reads Chart.yaml, values.yaml, values.schema.json, templates/,
// crds/ and every other file (.Files) of a chart directory.
func loadChart(dir string) (*Chart, error) {
	c := &Chart{Values: map[string]interface{}{}, Templates: map[string]string{}, Files: Files{}, CRDs: map[string]string{}}
	meta, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(meta, &c.Meta); err != nil {
		return nil, fmt.Errorf("Chart.yaml: %v", err)
	}
	switch {
	case c.Meta.APIVersion != "v2":
		return nil, fmt.Errorf("Chart.yaml: apiVersion must be v2 (got %q)", c.Meta.APIVersion)
	case c.Meta.Name == "" || c.Meta.Version == "":
		return nil, errors.New("Chart.yaml: name and version are required")
	case len(c.Meta.Dependencies) > 0:
		return nil, errors.New("Chart.yaml: dependencies are not supported by helm-render")
	}
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case rel == "Chart.yaml":
		case rel == "values.yaml":
			if c.Values, err = parseValues(data); err != nil {
				return fmt.Errorf("values.yaml: %v", err)
			}
		case rel == "values.schema.json":
			c.Schema = data
		case strings.HasPrefix(rel, "templates/"):
			c.Templates[c.Meta.Name+"/"+rel] = string(data)
		case strings.HasPrefix(rel, "charts/"):
			return errors.New("charts/: subcharts are not supported by helm-render")
		default:
			if strings.HasPrefix(rel, "crds/") && regexp.MustCompile(`\.(ya?ml|json)$`).MatchString(rel) {
				c.CRDs[c.Meta.Name+"/"+rel] = string(data)
			}
			c.Files[rel] = data
		}
		return nil
	})
	return c, err
}

// parseValues reads YAML values as Helm does (through JSON: numbers are float64).
func parseValues(data []byte) (map[string]interface{}, error) {
	vals := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &vals); err != nil {
		return nil, err
	}
	if vals == nil {
		vals = map[string]interface{}{}
	}
	return vals, nil
}

// mergeMaps returns a with b laid over it: maps are merged key by key, anything else in b replaces a's.
func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bm, ok := v.(map[string]interface{}); ok {
			if am, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeMaps(am, bm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// coalesce fills the user's values with the chart's defaults, as Helm
// does: a key the user set to null is removed (the chart's default is
// dropped, not restored), maps are filled key by key, and a user's value
// wins over a default of another shape (with a warning, as Helm gives).
func coalesce(user, defaults map[string]interface{}, prefix string) map[string]interface{} {
	for k, dv := range defaults {
		uv, ok := user[k]
		switch {
		case !ok:
			user[k] = dv
		case uv == nil:
			delete(user, k)
		default:
			um, userIsMap := uv.(map[string]interface{})
			dm, defaultIsMap := dv.(map[string]interface{})
			if userIsMap && defaultIsMap {
				coalesce(um, dm, prefix+k+".")
			} else if userIsMap != defaultIsMap && dv != nil {
				fmt.Fprintf(os.Stderr, "warning: %s%s: the value replaces a default of another shape (%v)\n", prefix, k, dv)
			}
		}
	}
	return user
}

// validate checks values against a JSON Schema; the error lists every
// failing value by its path, sorted.
func validate(schema []byte, values map[string]interface{}) error {
	res, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(schema), gojsonschema.NewGoLoader(values))
	if err != nil {
		return fmt.Errorf("values.schema.json: %v", err)
	}
	if res.Valid() {
		return nil
	}
	var lines []string
	for _, e := range res.Errors() {
		lines = append(lines, fmt.Sprintf("- %s: %s", e.Field(), e.Description()))
	}
	sort.Strings(lines)
	return errors.New("values don't meet the specifications of values.schema.json:\n" + strings.Join(lines, "\n"))
}

// render executes every template that is not a partial (a name starting
// with "_") and returns their output by template name.
func render(c *Chart, values map[string]interface{}, name, namespace string) (map[string]string, error) {
	root := template.New("gotpl").Option("missingkey=zero")
	root.Funcs(funcMap(root))
	names := sortedKeys(c.Templates)
	for _, n := range names {
		if _, err := root.New(n).Parse(c.Templates[n]); err != nil {
			return nil, err
		}
	}
	versions := APIVersions{"v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1", "apiextensions.k8s.io/v1",
		"coordination.k8s.io/v1", "discovery.k8s.io/v1", "policy/v1", "networking.k8s.io/v1"}
	out := map[string]string{}
	for _, n := range names {
		if strings.HasPrefix(path.Base(n), "_") {
			continue
		}
		data := map[string]interface{}{
			"Values":  values,
			"Chart":   c.Meta,
			"Files":   c.Files,
			"Release": map[string]interface{}{"Name": name, "Namespace": namespace, "IsInstall": true, "IsUpgrade": false, "Revision": 1, "Service": "Helm"},
			"Capabilities": map[string]interface{}{
				"KubeVersion": map[string]interface{}{"Version": kubeVersion, "GitVersion": kubeVersion, "Major": "1", "Minor": "30"},
				"APIVersions": versions,
			},
			"Template": map[string]interface{}{"Name": n, "BasePath": c.Meta.Name + "/templates"},
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, n, data); err != nil {
			return nil, cleanError(err)
		}
		out[n] = strings.ReplaceAll(buf.String(), "<no value>", "")
	}
	return out, nil
}

// funcMap is sprig's functions without env and expandenv (a chart must not
// read the renderer's environment), and Helm's own.
func funcMap(root *template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = func(v interface{}) string {
		data, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(data), "\n")
	}
	f["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["toJson"] = func(v interface{}) string {
		data, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(data)
	}
	f["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		if _, err := t.New("tpl").Parse(text); err != nil {
			return "", err
		}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, "tpl", data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if s, ok := v.(string); v == nil || (ok && s == "") {
			return v, errors.New(msg)
		}
		return v, nil
	}
	f["fail"] = func(msg string) (string, error) { return "", errors.New(msg) }
	f["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	return f
}

// cleanError turns text/template's "template: T:L:C: executing "T" at <...>: error calling fail: MSG"
// into Helm's "execution error at (T:L:C): MSG".
func cleanError(err error) error {
	m := regexp.MustCompile(`(?s)^template: (\S+?):? executing .* error calling (?:fail|required): (.*)$`).FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	return fmt.Errorf("execution error at (%s): %s", m[1], m[2])
}

// split cuts a rendered template into its YAML documents, leaving out those
// that are empty or hold only comments; each must parse as YAML.
func split(source, text string) ([]Manifest, error) {
	var out []Manifest
	for _, doc := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(text, -1) {
		doc = strings.TrimSpace(doc)
		if doc == "" {
			continue
		}
		var head map[string]interface{}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("YAML parse error on %s: %v", source, err)
		}
		if head == nil {
			continue
		}
		kind, _ := head["kind"].(string)
		out = append(out, Manifest{Source: source, Content: doc, kind: kind})
	}
	return out, nil
}

// kindBefore orders kinds as Helm installs them.
func kindBefore(a, b string) bool {
	rank := func(k string) int {
		for i, x := range installOrder {
			if x == k {
				return i
			}
		}
		return len(installOrder)
	}
	ra, rb := rank(a), rank(b)
	if ra != rb || ra < len(installOrder) {
		return ra < rb
	}
	return a < b
}

// applySet sets the values of one --set argument in vals. As with helm:
// comma-separated KEY=VALUE pairs; KEY a dotted path whose parts may end in
// [N] (a list index); VALUE null, true, false, an integer (int64), {A,B} (a
// list of such values) or else a string. A backslash makes the next
// character plain ("a\.b" is one key, "x\,y" one value).
func applySet(vals map[string]interface{}, arg string) error {
	for _, pair := range splitPlain(arg, ',') {
		kv := splitPlain(pair, '=')
		if len(kv) < 2 {
			return fmt.Errorf("%q is not KEY=VALUE", pair)
		}
		keys, err := parseKey(kv[0])
		if err != nil {
			return err
		}
		raw := strings.Join(kv[1:], "=")
		var value interface{}
		if strings.HasPrefix(raw, "{") && strings.HasSuffix(raw, "}") {
			list := []interface{}{}
			for _, item := range splitPlain(raw[1:len(raw)-1], ',') {
				list = append(list, typed(unescape(item)))
			}
			value = list
		} else {
			value = typed(unescape(raw))
		}
		if err := setPath(vals, keys, value); err != nil {
			return err
		}
	}
	return nil
}

// splitPlain splits s at each sep that is neither escaped by a backslash
// nor inside braces; escapes are kept for the caller.
func splitPlain(s string, sep byte) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '{':
			depth++
		case '}':
			depth--
		case sep:
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

func unescape(s string) string { return regexp.MustCompile(`\\(.)`).ReplaceAllString(s, "$1") }

// typed gives a --set value Helm's type: null, a boolean, an int64, or the string itself.
func typed(s string) interface{} {
	switch s {
	case "null":
		return nil
	case "true":
		return true
	case "false":
		return false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && (s == "0" || !strings.HasPrefix(s, "0")) {
		return n
	}
	return s
}

// parseKey splits a --set key into map keys (strings) and list indices (ints).
func parseKey(key string) ([]interface{}, error) {
	var out []interface{}
	for _, part := range splitPlain(key, '.') {
		m := regexp.MustCompile(`^(.*?)((?:\[\d+\])*)$`).FindStringSubmatch(part)
		if m[1] == "" {
			return nil, fmt.Errorf("key %q has an empty part", key)
		}
		out = append(out, unescape(m[1]))
		for _, idx := range regexp.MustCompile(`\d+`).FindAllString(m[2], -1) {
			n, _ := strconv.Atoi(idx)
			out = append(out, n)
		}
	}
	return out, nil
}

// setPath sets value at keys below vals, making the maps and lists on the way.
func setPath(vals map[string]interface{}, keys []interface{}, value interface{}) error {
	var set func(container interface{}, i int) (interface{}, error)
	set = func(container interface{}, i int) (interface{}, error) {
		if i == len(keys) {
			return value, nil
		}
		switch k := keys[i].(type) {
		case string:
			m, ok := container.(map[string]interface{})
			if !ok {
				m = map[string]interface{}{}
			}
			v, err := set(m[k], i+1)
			m[k] = v
			return m, err
		default:
			n := k.(int)
			l, _ := container.([]interface{})
			for len(l) <= n {
				l = append(l, nil)
			}
			v, err := set(l[n], i+1)
			l[n] = v
			return l, err
		}
	}
	_, err := set(vals, 0)
	return err
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

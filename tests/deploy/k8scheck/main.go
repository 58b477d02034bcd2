// k8scheck validates rendered Kubernetes manifests (helm template output) against the API of a
// pinned Kubernetes release and the published types of the custom resources the pattern uses.
//
// Every document is decoded strictly (unknown or duplicate fields refused) into its Go API type:
// k8s.io/api (Kubernetes 1.32), OpenShift Route (github.com/openshift/api route/v1),
// cert-manager Issuer/Certificate, External Secrets ExternalSecret, OCM Placement and
// ManagedClusterSetBinding. Kinds whose Go types the module proxy does not serve (KataConfig,
// ACM Policy, PlacementBinding, ConfigurationPolicy) are checked against their CRD OpenAPI
// schemas (schemas/). A few semantic checks the API server would also make follow: names,
// label selectors that select their own pod template, volume mounts that name a volume,
// container port names.
//
// usage: k8scheck [FILE...]   (standard input when no file); exit 0 valid, 1 invalid, 2 usage.
package main

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	esv1 "github.com/external-secrets/external-secrets/apis/externalsecrets/v1"
	routev1 "github.com/openshift/api/route/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

//go:embed schemas/*.yaml
var schemaFiles embed.FS

type typed func() interface{}

var goTypes = map[string]typed{
	"v1/ConfigMap":                                         func() interface{} { return &corev1.ConfigMap{} },
	"v1/Secret":                                            func() interface{} { return &corev1.Secret{} },
	"v1/Service":                                           func() interface{} { return &corev1.Service{} },
	"v1/ServiceAccount":                                    func() interface{} { return &corev1.ServiceAccount{} },
	"v1/Namespace":                                         func() interface{} { return &corev1.Namespace{} },
	"apps/v1/Deployment":                                   func() interface{} { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                                  func() interface{} { return &appsv1.StatefulSet{} },
	"apps/v1/DaemonSet":                                    func() interface{} { return &appsv1.DaemonSet{} },
	"networking.k8s.io/v1/Ingress":                         func() interface{} { return &networkingv1.Ingress{} },
	"networking.k8s.io/v1/NetworkPolicy":                   func() interface{} { return &networkingv1.NetworkPolicy{} },
	"rbac.authorization.k8s.io/v1/Role":                    func() interface{} { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/RoleBinding":             func() interface{} { return &rbacv1.RoleBinding{} },
	"route.openshift.io/v1/Route":                          func() interface{} { return &routev1.Route{} },
	"cert-manager.io/v1/Issuer":                            func() interface{} { return &certmanagerv1.Issuer{} },
	"cert-manager.io/v1/ClusterIssuer":                     func() interface{} { return &certmanagerv1.ClusterIssuer{} },
	"cert-manager.io/v1/Certificate":                       func() interface{} { return &certmanagerv1.Certificate{} },
	"external-secrets.io/v1/ExternalSecret":                func() interface{} { return &esv1.ExternalSecret{} },
	"external-secrets.io/v1/SecretStore":                   func() interface{} { return &esv1.SecretStore{} },
	"external-secrets.io/v1/ClusterSecretStore":            func() interface{} { return &esv1.ClusterSecretStore{} },
	"cluster.open-cluster-management.io/v1beta1/Placement": func() interface{} { return &clusterv1beta1.Placement{} },
	"cluster.open-cluster-management.io/v1beta2/ManagedClusterSetBinding": func() interface{} {
		return &clusterv1beta2.ManagedClusterSetBinding{}
	},
}

var schemaKinds = map[string]string{
	"kataconfiguration.openshift.io/v1/KataConfig":             "schemas/kataconfig.yaml",
	"policy.open-cluster-management.io/v1/Policy":              "schemas/policy.yaml",
	"policy.open-cluster-management.io/v1/PlacementBinding":    "schemas/placementbinding.yaml",
	"policy.open-cluster-management.io/v1/ConfigurationPolicy": "schemas/configurationpolicy.yaml",
}

// Namespaced kinds must carry a namespace in rendered output (helm template sets it).
var clusterScoped = map[string]bool{"Namespace": true, "KataConfig": true, "ClusterIssuer": true,
	"ClusterSecretStore": true}

type checker struct {
	errs   []string
	counts map[string]int
}

func (c *checker) fail(where, format string, args ...interface{}) {
	c.errs = append(c.errs, where+": "+fmt.Sprintf(format, args...))
}

// splitDocs splits a YAML stream on document separators.
func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if strings.TrimRight(line, "\r\n") == "---" {
			docs = append(docs, append([]byte(nil), cur.Bytes()...))
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	return append(docs, cur.Bytes())
}

func isEmptyDoc(d []byte) bool {
	for _, line := range strings.Split(string(d), "\n") {
		t := strings.TrimSpace(line)
		if t != "" && !strings.HasPrefix(t, "#") {
			return false
		}
	}
	return true
}

func (c *checker) checkDoc(where string, doc []byte) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		c.fail(where, "not valid YAML (duplicate keys are refused): %v", err)
		return
	}
	c.checkJSON(where, js)
}

func (c *checker) checkJSON(where string, js []byte) {
	var head struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		c.fail(where, "not an object: %v", err)
		return
	}
	if head.APIVersion == "" || head.Kind == "" {
		c.fail(where, "apiVersion and kind are required")
		return
	}
	key := head.APIVersion + "/" + head.Kind
	where = fmt.Sprintf("%s (%s %s)", where, key, head.Metadata.Name)
	c.counts[key]++
	if head.Metadata.Name == "" {
		c.fail(where, "metadata.name is required")
	} else if errs := validation.IsDNS1123Subdomain(head.Metadata.Name); len(errs) > 0 {
		c.fail(where, "metadata.name: %s", strings.Join(errs, "; "))
	}
	for k, v := range head.Metadata.Labels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			c.fail(where, "label key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			c.fail(where, "label %s=%q: %s", k, v, strings.Join(errs, "; "))
		}
	}
	if mk, ok := goTypes[key]; ok {
		obj := mk()
		if err := strictDecode(js, obj); err != nil {
			c.fail(where, "%v", err)
			return
		}
		c.semantic(where, obj)
		return
	}
	if file, ok := schemaKinds[key]; ok {
		var sch schema
		raw, _ := schemaFiles.ReadFile(file)
		if err := yaml.UnmarshalStrict(raw, &sch); err != nil {
			c.fail(where, "schema %s: %v", file, err)
			return
		}
		var v interface{}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			c.fail(where, "%v", err)
			return
		}
		c.validate(where, "", &sch, v)
		return
	}
	c.fail(where, "unknown kind: no Go type or schema for %s", key)
}

// strictDecode decodes like the API server: field names are case-sensitive (encoding/json would
// accept "readOnlyRootFileSystem"), unknown and duplicate fields are errors.
func strictDecode(js []byte, obj interface{}) error {
	strict, err := sigsjson.UnmarshalStrict(js, obj, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return nil
}

// --- semantic checks ---------------------------------------------------------------------------

func (c *checker) podSpec(where string, sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec) {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		c.fail(where, "spec.selector is required and may not be empty")
	} else if s, err := metav1.LabelSelectorAsSelector(sel); err != nil {
		c.fail(where, "spec.selector: %v", err)
	} else if !s.Matches(labels.Set(tmpl.Labels)) {
		c.fail(where, "spec.selector does not select the pod template's labels")
	}
	volumes := map[string]bool{}
	for _, v := range tmpl.Spec.Volumes {
		if volumes[v.Name] {
			c.fail(where, "volume %q is defined twice", v.Name)
		}
		volumes[v.Name] = true
	}
	all := append(append([]corev1.Container{}, tmpl.Spec.InitContainers...), tmpl.Spec.Containers...)
	if len(tmpl.Spec.Containers) == 0 {
		c.fail(where, "the pod template has no containers")
	}
	for _, ct := range all {
		if ct.Image == "" {
			c.fail(where, "container %q has no image", ct.Name)
		}
		ports := map[string]bool{}
		for _, p := range ct.Ports {
			if p.Name != "" {
				if errs := validation.IsValidPortName(p.Name); len(errs) > 0 {
					c.fail(where, "container %q port name %q: %s", ct.Name, p.Name, strings.Join(errs, "; "))
				}
				ports[p.Name] = true
			}
		}
		for _, m := range ct.VolumeMounts {
			if !volumes[m.Name] {
				c.fail(where, "container %q mounts volume %q, which the pod does not define", ct.Name, m.Name)
			}
		}
		for _, pr := range []*corev1.Probe{ct.LivenessProbe, ct.ReadinessProbe, ct.StartupProbe} {
			if pr != nil && pr.HTTPGet != nil && pr.HTTPGet.Port.StrVal != "" && !ports[pr.HTTPGet.Port.StrVal] {
				c.fail(where, "container %q probes port %q, which it does not declare", ct.Name, pr.HTTPGet.Port.StrVal)
			}
		}
	}
}

func (c *checker) semantic(where string, obj interface{}) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		c.podSpec(where, o.Spec.Selector, &o.Spec.Template)
	case *appsv1.StatefulSet:
		c.podSpec(where, o.Spec.Selector, &o.Spec.Template)
	case *appsv1.DaemonSet:
		c.podSpec(where, o.Spec.Selector, &o.Spec.Template)
	case *corev1.Service:
		if len(o.Spec.Ports) == 0 {
			c.fail(where, "a Service needs at least one port")
		}
		for _, p := range o.Spec.Ports {
			if p.Port < 1 || p.Port > 65535 {
				c.fail(where, "port %d out of range", p.Port)
			}
		}
	case *routev1.Route:
		if o.Spec.To.Kind != "Service" || o.Spec.To.Name == "" {
			c.fail(where, "spec.to must name a Service")
		}
		if o.Spec.TLS != nil {
			switch o.Spec.TLS.Termination {
			case routev1.TLSTerminationEdge, routev1.TLSTerminationPassthrough, routev1.TLSTerminationReencrypt:
			default:
				c.fail(where, "spec.tls.termination %q is not edge, passthrough or reencrypt", o.Spec.TLS.Termination)
			}
		}
	case *certmanagerv1.Certificate:
		if o.Spec.SecretName == "" || o.Spec.IssuerRef.Name == "" {
			c.fail(where, "spec.secretName and spec.issuerRef.name are required")
		}
	case *esv1.ExternalSecret:
		if o.Spec.SecretStoreRef.Name == "" {
			c.fail(where, "spec.secretStoreRef.name is required")
		}
	}
}

// --- OpenAPI schema validation (structural subset) ----------------------------------------------

type schema struct {
	Type                 string             `json:"type"`
	Properties           map[string]*schema `json:"properties"`
	AdditionalProperties *schema            `json:"additionalProperties"`
	Items                *schema            `json:"items"`
	Required             []string           `json:"required"`
	Enum                 []interface{}      `json:"enum"`
	Nullable             bool               `json:"nullable"`
	MinLength            *int               `json:"minLength"`
	MinItems             *int               `json:"minItems"`
	PreserveUnknown      bool               `json:"x-kubernetes-preserve-unknown-fields"`
	EmbeddedObject       bool               `json:"x-coco-embedded-object"`
}

func (c *checker) validate(where, path string, s *schema, v interface{}) {
	at := path
	if at == "" {
		at = "."
	}
	if v == nil {
		if !s.Nullable && s.Type != "" {
			c.fail(where, "%s: null is not allowed", at)
		}
		return
	}
	switch s.Type {
	case "object":
		m, ok := v.(map[string]interface{})
		if !ok {
			c.fail(where, "%s: must be an object", at)
			return
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				c.fail(where, "%s: required field %q is missing", at, r)
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if p, ok := s.Properties[k]; ok {
				c.validate(where, path+"."+k, p, m[k])
			} else if s.AdditionalProperties != nil {
				c.validate(where, path+"."+k, s.AdditionalProperties, m[k])
			} else if !s.PreserveUnknown {
				c.fail(where, "%s: unknown field %q", at, k)
			}
		}
		if s.EmbeddedObject {
			js, _ := json.Marshal(m)
			c.checkJSON(where+" "+path, js)
		}
	case "array":
		a, ok := v.([]interface{})
		if !ok {
			c.fail(where, "%s: must be an array", at)
			return
		}
		if s.MinItems != nil && len(a) < *s.MinItems {
			c.fail(where, "%s: needs at least %d items", at, *s.MinItems)
		}
		for i, e := range a {
			if s.Items != nil {
				c.validate(where, fmt.Sprintf("%s[%d]", path, i), s.Items, e)
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			c.fail(where, "%s: must be a string", at)
			return
		}
		if s.MinLength != nil && len(str) < *s.MinLength {
			c.fail(where, "%s: shorter than %d", at, *s.MinLength)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			c.fail(where, "%s: must be a boolean", at)
		}
	case "integer":
		n, ok := v.(json.Number)
		if _, err := n.Int64(); !ok || err != nil {
			c.fail(where, "%s: must be an integer", at)
		}
	}
	if len(s.Enum) > 0 {
		for _, e := range s.Enum {
			if fmt.Sprint(e) == fmt.Sprint(v) {
				return
			}
		}
		c.fail(where, "%s: %v is not one of %v", at, v, s.Enum)
	}
}

func main() {
	c := &checker{counts: map[string]int{}}
	inputs := os.Args[1:]
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	for _, in := range inputs {
		var data []byte
		var err error
		if in == "-" {
			data, err = io.ReadAll(io.LimitReader(os.Stdin, 64<<20))
		} else {
			data, err = os.ReadFile(in)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "k8scheck: %v\n", err)
			os.Exit(2)
		}
		for i, doc := range splitDocs(data) {
			if isEmptyDoc(doc) {
				continue
			}
			where := fmt.Sprintf("%s: document %d", in, i+1)
			c.checkDoc(where, doc)
			// namespaced objects need their namespace in rendered output
			var head struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Namespace string `json:"namespace"`
				} `json:"metadata"`
			}
			if js, err := yaml.YAMLToJSON(doc); err == nil && json.Unmarshal(js, &head) == nil &&
				head.Kind != "" && !clusterScoped[head.Kind] && head.Metadata.Namespace == "" {
				c.fail(where, "%s has no metadata.namespace", head.Kind)
			}
		}
	}
	kinds := make([]string, 0, len(c.counts))
	total := 0
	for k, n := range c.counts {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
		total += n
	}
	sort.Strings(kinds)
	for _, e := range c.errs {
		fmt.Println("INVALID", e)
	}
	fmt.Printf("k8scheck: %d objects, %d errors (%s)\n", total, len(c.errs), strings.Join(kinds, " "))
	if len(c.errs) > 0 {
		os.Exit(1)
	}
}

{{- define "kbs.labels" -}}
app.kubernetes.io/name: kbs
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: coco-trust
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "kbs.selector" -}}
app.kubernetes.io/name: kbs
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kbs.host" -}}
{{ printf "kbs.%s" .Values.hubClusterDomain }}
{{- end }}

{{- define "kbs.attestationPolicy" -}}
{{- if .Values.attestationPolicyRego -}}
{{ .Values.attestationPolicyRego }}
{{- else if eq .Values.attestationPolicy "pattern" -}}
{{ .Files.Get "files/pattern_cpu.rego" }}
{{- else -}}
{{ fail "attestationPolicy must be \"pattern\", or set attestationPolicyRego" }}
{{- end -}}
{{- end }}

{{- define "kbs.resourcePolicy" -}}
{{- if .Values.resourcePolicyRego -}}
{{ .Values.resourcePolicyRego }}
{{- else if eq .Values.resourcePolicy "affirming" -}}
{{ .Files.Get "files/affirming.rego" }}
{{- else -}}
{{ fail "resourcePolicy must be \"affirming\", or set resourcePolicyRego" }}
{{- end -}}
{{- end }}

{{- define "kbs.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end }}

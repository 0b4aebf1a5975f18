{{/*
The value of app.kubernetes.io/name: the chart's name. The ServiceMonitor
makes it Prometheus' job label, and the alert rules and the dashboard
select job="xlb".
*/}}
{{- define "xlb.name" -}}
{{ .Chart.Name }}
{{- end }}

{{/*
Object names: fullnameOverride, else the release's name when it contains
the chart's name, else <release>-<chart>; at most 40 characters, so that
"<name>-leader-election" is a valid name.
*/}}
{{- define "xlb.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "xlb.labels" -}}
app.kubernetes.io/name: {{ include "xlb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/*
The labels of the agents' pods, which the DaemonSet and the metrics
Service select by. A DaemonSet's selector cannot change: these stay what
deploy/ has always had.
*/}}
{{- define "xlb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "xlb.name" . }}
{{- end }}

{{/* The agent's image: image.repository:image.tag, the tag defaulting to the chart's appVersion. */}}
{{- define "xlb.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The agent's configuration file (the ConfigMap's config.yaml): the agent's
keys of the values as they are, leaving out those that are empty (the
agent's defaults apply; an empty bgp, l2 or ipam turns it off). The Leases
of LB IPAM and of layer 2 live in the release's namespace, where the
chart's Role allows them.
*/}}
{{- define "xlb.agentConfig" -}}
{{- $config := dict }}
{{- range $key := list "interfaces" "source" "datapath" "flows" "hubble" "api" "metrics" "socketLB" "podInterfaces" "ipam" "bgp" "l2" "announce" "log" }}
{{- $value := index $.Values $key }}
{{- if $value }}
{{- $_ := set $config $key (deepCopy $value) }}
{{- end }}
{{- end }}
{{- range $section := list (list "ipam" "leaderElection") (list "l2" "lease") }}
{{- $parent := index $config (first $section) }}
{{- if $parent }}
{{- $lease := index $parent (last $section) | default dict }}
{{- if and $lease.namespace (ne $lease.namespace $.Release.Namespace) }}
{{- fail (printf "%s.%s.namespace: %s is not the release's namespace %s, where the chart's Role allows Leases; leave it out" (first $section) (last $section) $lease.namespace $.Release.Namespace) }}
{{- end }}
{{- $_ := set $lease "namespace" $.Release.Namespace }}
{{- $_ := set $parent (last $section) $lease }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The port of a HOST:PORT listen address, "" for none. */}}
{{- define "xlb.listenPort" -}}
{{- if . }}{{ regexFind "[0-9]+$" . }}{{ end }}
{{- end }}

{{/* The host the kubelet reaches a HOST:PORT listener on: loopback for a wildcard address. */}}
{{- define "xlb.probeHost" -}}
{{- $host := regexReplaceAll ":[0-9]+$" . "" | trimPrefix "[" | trimSuffix "]" }}
{{- if eq $host "0.0.0.0" }}127.0.0.1{{ else if eq $host "::" }}::1{{ else }}{{ $host }}{{ end }}
{{- end }}

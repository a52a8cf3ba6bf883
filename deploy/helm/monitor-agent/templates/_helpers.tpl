{{/* The chart's name, or nameOverride. */}}
{{- define "monitor-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The objects' name: the release name when it already contains the chart's name. */}}
{{- define "monitor-agent.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "monitor-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "monitor-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of the pods: selector labels plus what describes the workload. */}}
{{- define "monitor-agent.podLabels" -}}
{{ include "monitor-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: monitor
{{- end }}

{{/* Labels of every object: the pods' plus Helm's own. */}}
{{- define "monitor-agent.labels" -}}
{{ include "monitor-agent.podLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "monitor-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "monitor-agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* [registry/]repository[:tag][@digest]; the tag defaults to the appVersion. */}}
{{- define "monitor-agent.image" -}}
{{- $image := .Values.image.repository }}
{{- with .Values.image.registry }}
{{- $image = printf "%s/%s" (trimSuffix "/" .) $image }}
{{- end }}
{{- with (.Values.image.tag | default .Chart.AppVersion) }}
{{- $image = printf "%s:%s" $image (toString .) }}
{{- end }}
{{- with .Values.image.digest }}
{{- $image = printf "%s@%s" $image . }}
{{- end }}
{{- $image }}
{{- end }}

{{/* "true" when the web configuration turns TLS on: probes and scrapes use HTTPS. */}}
{{- define "monitor-agent.tls" -}}
{{- if (.Values.webConfig | default dict).tls_server_config }}true{{ end }}
{{- end }}

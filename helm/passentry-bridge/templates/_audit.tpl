{{/* Labels of the audit CronJob and its pods: the chart's, but another name and component,
     so no selector of the bridge's Deployment, Service, PDB or NetworkPolicy matches them. */}}
{{- define "passentry-bridge.auditLabels" -}}
helm.sh/chart: {{ include "passentry-bridge.chart" . }}
app.kubernetes.io/name: {{ include "passentry-bridge.name" . | trunc 57 | trimSuffix "-" }}-audit
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: audit
app.kubernetes.io/part-of: passentry-bridge
{{- end }}

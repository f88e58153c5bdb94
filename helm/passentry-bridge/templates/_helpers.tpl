{{/* Chart name, truncated to the 63 characters Kubernetes allows in a label. */}}
{{- define "passentry-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already contains the chart name. */}}
{{- define "passentry-bridge.fullname" -}}
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

{{- define "passentry-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "passentry-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "passentry-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* app.kubernetes.io/part-of is fixed: the ServiceMonitor uses it as the job label, and the
     alert rules select job="passentry-bridge". */}}
{{- define "passentry-bridge.labels" -}}
helm.sh/chart: {{ include "passentry-bridge.chart" . }}
{{ include "passentry-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: bridge
app.kubernetes.io/part-of: passentry-bridge
{{- end }}

{{- define "passentry-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "passentry-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "passentry-bridge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The chart's own Secret, holding whichever credentials were given as values. */}}
{{- define "passentry-bridge.secretName" -}}
{{- include "passentry-bridge.fullname" . }}
{{- end }}

{{- define "passentry-bridge.tokenSecretName" -}}
{{- .Values.passentry.existingSecret | default (include "passentry-bridge.secretName" .) }}
{{- end }}

{{- define "passentry-bridge.tokenSecretKey" -}}
{{- if .Values.passentry.existingSecret }}{{ .Values.passentry.existingSecretKey }}{{ else }}api-token{{ end }}
{{- end }}

{{- define "passentry-bridge.saslSecretName" -}}
{{- .Values.kafka.sasl.existingSecret | default (include "passentry-bridge.secretName" .) }}
{{- end }}

{{- define "passentry-bridge.saslSecretKey" -}}
{{- if .Values.kafka.sasl.existingSecret }}{{ .Values.kafka.sasl.existingSecretKey }}{{ else }}sasl-password{{ end }}
{{- end }}

{{- define "passentry-bridge.saslEnabled" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end }}
{{- end }}

{{/* True when the SASL user name comes from the existing Secret, not from the ConfigMap. */}}
{{- define "passentry-bridge.saslUsernameFromSecret" -}}
{{- if and .Values.kafka.sasl.existingSecret .Values.kafka.sasl.usernameKey }}true{{ end }}
{{- end }}

{{- define "passentry-bridge.registrySecretName" -}}
{{- .Values.schemaRegistry.existingSecret | default (include "passentry-bridge.secretName" .) }}
{{- end }}

{{- define "passentry-bridge.webhookSecretName" -}}
{{- .Values.webhook.existingSecret | default (include "passentry-bridge.secretName" .) }}
{{- end }}

{{- define "passentry-bridge.webhookSecretKey" -}}
{{- if .Values.webhook.existingSecret }}{{ .Values.webhook.existingSecretKey }}{{ else }}webhook-secret{{ end }}
{{- end }}

{{/* True when the chart must create its Secret (some credential was given as a value). */}}
{{- define "passentry-bridge.needsSecret" -}}
{{- $sourceTokens := false }}
{{- range .Values.sources }}{{ if .apiToken }}{{ $sourceTokens = true }}{{ end }}{{ end }}
{{- if or (and (not .Values.sources) (not .Values.passentry.existingSecret) .Values.passentry.apiToken)
          $sourceTokens
          (and .Values.webhook.enabled (not .Values.webhook.existingSecret) .Values.webhook.secret)
          (and (include "passentry-bridge.saslEnabled" .) (not .Values.kafka.sasl.existingSecret) .Values.kafka.sasl.password)
          (and .Values.schemaRegistry.enabled (not .Values.schemaRegistry.existingSecret) (or .Values.schemaRegistry.basicAuthUserInfo .Values.schemaRegistry.bearerToken)) }}true{{ end }}
{{- end }}

{{/* terminationGracePeriodSeconds: the bridge's own shutdown grace plus a margin. */}}
{{- define "passentry-bridge.terminationGracePeriodSeconds" -}}
{{- add (ceil .Values.bridge.shutdownGraceSeconds | int) .Values.bridge.terminationGraceMarginSeconds }}
{{- end }}

{{/* Env vars the ConfigMap cannot carry: secrets (by reference) and extraEnv. */}}
{{- define "passentry-bridge.secretEnv" -}}
{{- if include "passentry-bridge.saslEnabled" . }}
{{- if include "passentry-bridge.saslUsernameFromSecret" . }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.usernameKey }}
{{- end }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "passentry-bridge.saslSecretName" . }}
      key: {{ include "passentry-bridge.saslSecretKey" . }}
{{- end }}
{{- with .Values.kafka.tls.clientCertificate }}
{{- if and .existingSecret .keyPasswordKey }}
- name: KAFKA_SSL_KEY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .keyPasswordKey }}
{{- end }}
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.keyPasswordKey (not .Values.kafka.tls.clientCertificate.existingSecret) }}
- name: KAFKA_SSL_KEY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.tls.existingSecret }}
      key: {{ .Values.kafka.tls.keyPasswordKey }}
{{- end }}
{{- if .Values.schemaRegistry.enabled }}
{{- if or .Values.schemaRegistry.basicAuthUserInfo .Values.schemaRegistry.existingSecret }}
- name: SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO
  valueFrom:
    secretKeyRef:
      name: {{ include "passentry-bridge.registrySecretName" . }}
      key: {{ .Values.schemaRegistry.basicAuthUserInfoKey }}
      optional: {{ not (empty .Values.schemaRegistry.existingSecret) }}
{{- end }}
{{- if or .Values.schemaRegistry.bearerToken .Values.schemaRegistry.existingSecret }}
- name: SCHEMA_REGISTRY_BEARER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "passentry-bridge.registrySecretName" . }}
      key: {{ .Values.schemaRegistry.bearerTokenKey }}
      optional: {{ not (empty .Values.schemaRegistry.existingSecret) }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end }}

{{/* The pod's anti-affinity: replicas on different nodes, so a node failure leaves one to
     take over. An explicit .Values.affinity wins. */}}
{{- define "passentry-bridge.affinity" -}}
{{- if .Values.affinity }}
{{- toYaml .Values.affinity }}
{{- else if eq .Values.podAntiAffinity "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "passentry-bridge.selectorLabels" . | nindent 10 }}
{{- else if eq .Values.podAntiAffinity "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "passentry-bridge.selectorLabels" . | nindent 12 }}
{{- end }}
{{- end }}

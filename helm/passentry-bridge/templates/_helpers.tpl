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

{{/* The sources whose webhook secret the chart mounts (sources[].webhook), when webhooks
     are on: a list of their entries. */}}
{{- define "passentry-bridge.webhookSources" -}}
{{- $found := list }}
{{- if .Values.webhook.enabled }}
{{- range .Values.sources }}
{{- if and .webhook (or .webhook.secret .webhook.existingSecret) }}{{ $found = append $found . }}{{ end }}
{{- end }}
{{- end }}
{{- toJson $found }}
{{- end }}

{{/* True when the chart must create its Secret (some credential was given as a value). */}}
{{- define "passentry-bridge.needsSecret" -}}
{{- $sourceTokens := false }}
{{- range .Values.sources }}{{ if .apiToken }}{{ $sourceTokens = true }}{{ end }}{{ end }}
{{- range (include "passentry-bridge.webhookSources" . | fromJsonArray) }}{{ if not .webhook.existingSecret }}{{ $sourceTokens = true }}{{ end }}{{ end }}
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

{{/* Env vars the ConfigMap cannot carry: the SASL user name from a Secret, and extraEnv.
     Passwords and tokens are mounted files, never env. */}}
{{- define "passentry-bridge.secretEnv" -}}
{{- if and (include "passentry-bridge.saslEnabled" .) (include "passentry-bridge.saslUsernameFromSecret" .) }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.usernameKey }}
{{- end }}
{{- with .Values.extraEnv }}
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end }}

{{/* The schema registry credential the chart mounts, as JSON: {"kind": "basic" or
     "bearer", "key": its key in the Secret}, or {} for none. */}}
{{- define "passentry-bridge.registryCredential" -}}
{{- $r := .Values.schemaRegistry }}
{{- $found := dict }}
{{- if $r.enabled }}
{{- if $r.existingSecret }}
{{- if $r.basicAuthUserInfoKey }}{{ $found = dict "kind" "basic" "key" $r.basicAuthUserInfoKey }}
{{- else if $r.bearerTokenKey }}{{ $found = dict "kind" "bearer" "key" $r.bearerTokenKey }}{{ end }}
{{- else if $r.basicAuthUserInfo }}{{ $found = dict "kind" "basic" "key" "basic-auth-user-info" }}
{{- else if $r.bearerToken }}{{ $found = dict "kind" "bearer" "key" "bearer-token" }}
{{- end }}
{{- end }}
{{- toJson $found }}
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

{{/* The bridge container's volume mounts (without extraVolumeMounts): /tmp, the token(s),
     the webhook secret, the Kafka and registry TLS files. The Deployment and the helm test
     pod mount the same, so `passentry-bridge check` there sees what the bridge sees. */}}
{{- define "passentry-bridge.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.sources }}
- name: sources
  mountPath: /etc/passentry-bridge/sources
  readOnly: true
- name: source-tokens
  mountPath: /var/run/secrets/passentry-bridge/sources
  readOnly: true
{{- else }}
- name: api-token
  mountPath: /var/run/secrets/passentry-bridge/api
  readOnly: true
{{- end }}
{{- if or (and .Values.webhook.enabled (not .Values.sources)) (include "passentry-bridge.webhookSources" . | fromJsonArray) }}
- name: webhook-secret
  mountPath: /var/run/secrets/passentry-bridge/webhook
  readOnly: true
{{- end }}
{{- if include "passentry-bridge.saslEnabled" . }}
- name: kafka-sasl
  mountPath: /var/run/secrets/passentry-bridge/kafka-sasl
  readOnly: true
{{- end }}
{{- if include "passentry-bridge.registryCredential" . | fromJson }}
- name: schema-registry-credentials
  mountPath: /var/run/secrets/passentry-bridge/schema-registry
  readOnly: true
{{- end }}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  mountPath: /etc/passentry-bridge/kafka-tls
  readOnly: true
{{- end }}
{{- if .Values.kafka.tls.clientCertificate.existingSecret }}
- name: kafka-client-tls
  mountPath: /etc/passentry-bridge/kafka-client-tls
  readOnly: true
{{- end }}
{{- if and .Values.schemaRegistry.enabled .Values.schemaRegistry.tls.existingSecret }}
- name: schema-registry-tls
  mountPath: /etc/passentry-bridge/schema-registry-tls
  readOnly: true
{{- end }}
{{- end }}

{{/* The volumes behind passentry-bridge.volumeMounts (without extraVolumes). */}}
{{- define "passentry-bridge.volumes" -}}
# The root filesystem is read-only; /tmp is the only writable place.
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if .Values.sources }}
- name: sources
  configMap:
    name: {{ include "passentry-bridge.fullname" . }}-sources
- name: source-tokens
  projected:
    defaultMode: 0440
    sources:
      {{- range .Values.sources }}
      - secret:
          name: {{ .existingSecret | default (include "passentry-bridge.secretName" $) }}
          items:
            - key: {{ if .existingSecret }}{{ .existingSecretKey | default "api-token" }}{{ else }}source-{{ .id }}-token{{ end }}
              path: {{ .id }}/token
      {{- end }}
{{- else }}
- name: api-token
  secret:
    secretName: {{ include "passentry-bridge.tokenSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "passentry-bridge.tokenSecretKey" . }}
        path: token
{{- end }}
{{- if and .Values.webhook.enabled (not .Values.sources) }}
- name: webhook-secret
  secret:
    secretName: {{ include "passentry-bridge.webhookSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "passentry-bridge.webhookSecretKey" . }}
        path: secret
      {{- with .Values.webhook.previousSecretKey }}
      - key: {{ . }}
        path: previous
      {{- end }}
{{- else if (include "passentry-bridge.webhookSources" . | fromJsonArray) }}
# Each source's own secret, at <id>/secret (and <id>/previous during a rotation).
- name: webhook-secret
  projected:
    defaultMode: 0440
    sources:
      {{- range (include "passentry-bridge.webhookSources" . | fromJsonArray) }}
      {{- $w := .webhook }}
      - secret:
          name: {{ $w.existingSecret | default (include "passentry-bridge.secretName" $) }}
          items:
            - key: {{ if $w.existingSecret }}{{ $w.existingSecretKey | default "webhook-secret" }}{{ else }}source-{{ .id }}-webhook-secret{{ end }}
              path: {{ .id }}/secret
            {{- if and $w.existingSecret $w.previousSecretKey }}
            - key: {{ $w.previousSecretKey }}
              path: {{ .id }}/previous
            {{- end }}
      {{- end }}
{{- end }}
{{- if include "passentry-bridge.saslEnabled" . }}
- name: kafka-sasl
  secret:
    secretName: {{ include "passentry-bridge.saslSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "passentry-bridge.saslSecretKey" . }}
        path: password
{{- end }}
{{- with include "passentry-bridge.registryCredential" . | fromJson }}
- name: schema-registry-credentials
  secret:
    secretName: {{ include "passentry-bridge.registrySecretName" $ }}
    defaultMode: 0440
    items:
      - key: {{ .key }}
        path: {{ .kind }}
{{- end }}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- with .Values.kafka.tls.clientCertificate }}
{{- if .existingSecret }}
- name: kafka-client-tls
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .certKey }}
        path: {{ .certKey }}
      - key: {{ .keyKey }}
        path: {{ .keyKey }}
      {{- with .keyPasswordKey }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end }}
{{- end }}
{{- if and .Values.schemaRegistry.enabled .Values.schemaRegistry.tls.existingSecret }}
- name: schema-registry-tls
  secret:
    secretName: {{ .Values.schemaRegistry.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{/* Labels of the helm test pod: its own name and component, so that no selector of the
     bridge's Deployment, Service, PodDisruptionBudget or NetworkPolicy matches it. */}}
{{- define "passentry-bridge.testLabels" -}}
helm.sh/chart: {{ include "passentry-bridge.chart" . }}
app.kubernetes.io/name: {{ include "passentry-bridge.name" . | trunc 58 | trimSuffix "-" }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: test
app.kubernetes.io/part-of: passentry-bridge
{{- end }}

{{/* What the release needs and does not create, one "  - ..." line each (NOTES.txt prints
     it; the chart's README explains it): Secrets named in the values with the keys read
     from them, the service account when serviceAccount.create is false, the dashboard's
     namespace, and the prometheus-operator CRDs. */}}
{{- define "passentry-bridge.prerequisites" -}}
{{- $ns := .Release.Namespace }}
{{- $lines := list }}
{{- with .Values.passentry.existingSecret }}
{{- if not $.Values.sources }}
{{- $lines = append $lines (printf "Secret %s in namespace %s, key %s (the PassEntry API token)" . $ns $.Values.passentry.existingSecretKey) }}
{{- end }}
{{- end }}
{{- range .Values.sources }}
{{- if .existingSecret }}
{{- $lines = append $lines (printf "Secret %s in namespace %s, key %s (source %s's API token)" .existingSecret $ns (.existingSecretKey | default "api-token") .id) }}
{{- end }}
{{- end }}
{{- if and (include "passentry-bridge.saslEnabled" .) .Values.kafka.sasl.existingSecret }}
{{- with .Values.kafka.sasl }}
{{- if .usernameKey }}
{{- $lines = append $lines (printf "Secret %s in namespace %s, keys %s, %s (the Kafka SASL password and user name)" .existingSecret $ns .existingSecretKey .usernameKey) }}
{{- else }}
{{- $lines = append $lines (printf "Secret %s in namespace %s, key %s (the Kafka SASL password)" .existingSecret $ns .existingSecretKey) }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.kafka.tls.enabled }}
{{- $t := .Values.kafka.tls }}
{{- $client := $t.clientCertificate }}
{{- /* a client certificate Secret of its own wins over certKey/keyKey in the CA's Secret */}}
{{- $named := list $t.caKey }}
{{- if not $client.existingSecret }}{{ $named = concat $named (list $t.certKey $t.keyKey $t.keyPasswordKey) }}{{ end }}
{{- $keys := list }}
{{- range $named }}{{ if . }}{{ $keys = append $keys . }}{{ end }}{{ end }}
{{- $password := and (not $client.existingSecret) $t.keyPasswordKey }}
{{- $lines = append $lines (printf "Secret %s in namespace %s, keys %s (Kafka TLS: PEM files%s)" $t.existingSecret $ns (join ", " $keys) (ternary ", the key's password" "" (not (empty $password)))) }}
{{- with $client.existingSecret }}
{{- $keys = list $client.certKey $client.keyKey }}
{{- with $client.keyPasswordKey }}{{ $keys = append $keys . }}{{ end }}
{{- $lines = append $lines (printf "Secret %s in namespace %s, keys %s (the Kafka client certificate and key for mutual TLS, PEM%s)" . $ns (join ", " $keys) (ternary ", and the key's password" "" (not (empty $client.keyPasswordKey)))) }}
{{- end }}
{{- end }}
{{- if .Values.schemaRegistry.enabled }}
{{- if .Values.schemaRegistry.existingSecret }}
{{- with include "passentry-bridge.registryCredential" . | fromJson }}
{{- $lines = append $lines (printf "Secret %s in namespace %s, key %s (the schema registry's %s)" $.Values.schemaRegistry.existingSecret $ns .key (ternary "basic auth user:password" "bearer token" (eq .kind "basic"))) }}
{{- end }}
{{- end }}
{{- with .Values.schemaRegistry.tls.existingSecret }}
{{- $lines = append $lines (printf "Secret %s in namespace %s, key %s (the schema registry's CA, PEM)" . $ns $.Values.schemaRegistry.tls.caKey) }}
{{- end }}
{{- end }}
{{- range (include "passentry-bridge.webhookSources" . | fromJsonArray) }}
{{- $id := .id }}
{{- with .webhook }}
{{- if .existingSecret }}
{{- $keys := list (.existingSecretKey | default "webhook-secret") }}
{{- with .previousSecretKey }}{{ $keys = append $keys . }}{{ end }}
{{- $lines = append $lines (printf "Secret %s in namespace %s, keys %s (source %s's webhook secret%s)" .existingSecret $ns (join ", " $keys) $id (ternary " and the one being replaced" "" (not (empty .previousSecretKey)))) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.webhook.enabled (not .Values.sources) .Values.webhook.existingSecret }}
{{- $keys := list .Values.webhook.existingSecretKey }}
{{- with .Values.webhook.previousSecretKey }}{{ $keys = append $keys . }}{{ end }}
{{- $lines = append $lines (printf "Secret %s in namespace %s, keys %s (the webhook secret%s)" .Values.webhook.existingSecret $ns (join ", " $keys) (ternary " and the one being replaced" "" (not (empty .Values.webhook.previousSecretKey)))) }}
{{- end }}
{{- if and .Values.webhook.enabled .Values.webhook.ingress.enabled .Values.webhook.ingress.tlsSecretName }}
{{- $lines = append $lines (printf "Secret %s in namespace %s, type kubernetes.io/tls (the Ingress's certificate for %s; e.g. from cert-manager)" .Values.webhook.ingress.tlsSecretName $ns .Values.webhook.ingress.host) }}
{{- end }}
{{- if not .Values.serviceAccount.create }}
{{- $lines = append $lines (printf "ServiceAccount %s in namespace %s" (include "passentry-bridge.serviceAccountName" .) $ns) }}
{{- end }}
{{- if and .Values.dashboard.enabled .Values.dashboard.namespace (ne .Values.dashboard.namespace $ns) }}
{{- $lines = append $lines (printf "Namespace %s (where the dashboard ConfigMap goes; create it before installing)" .Values.dashboard.namespace) }}
{{- end }}
{{- if .Values.serviceMonitor.enabled }}
{{- $lines = append $lines "CRD servicemonitors.monitoring.coreos.com (prometheus-operator; before installing)" }}
{{- end }}
{{- if .Values.prometheusRule.enabled }}
{{- $lines = append $lines "CRD prometheusrules.monitoring.coreos.com (prometheus-operator; before installing)" }}
{{- end }}
{{- range $lines }}
  - {{ . }}
{{- end }}
{{- end }}

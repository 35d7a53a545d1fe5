{{/* Names, labels and the checks that refuse a values combination the collector cannot run with. */}}

{{- define "genai-collector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "genai-collector.fullname" -}}
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

{{- define "genai-collector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "genai-collector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "genai-collector.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "genai-collector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "genai-collector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "genai-collector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "genai-collector.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* StatefulSet (SQLite: one pod and its volume) or Deployment (PostgreSQL: replicas sharing the database). */}}
{{- define "genai-collector.workloadKind" -}}
{{- ternary "Deployment" "StatefulSet" (eq .Values.storage.type "postgres") }}
{{- end }}

{{/* "true" when the PodDisruptionBudget is rendered: as podDisruptionBudget.enabled says, or when it is null
(the default) with storage.type postgres, whose replicas a drain can take one at a time. */}}
{{- define "genai-collector.podDisruptionBudget" -}}
{{- $enabled := .Values.podDisruptionBudget.enabled }}
{{- if kindIs "invalid" $enabled }}{{ if eq .Values.storage.type "postgres" }}true{{ end }}
{{- else if $enabled }}true
{{- end }}
{{- end }}

{{/* The config file's path in the container; GENAI_COLLECTOR_CONFIG points at it. */}}
{{- define "genai-collector.configPath" -}}
/etc/genai-collector/collector.yaml
{{- end }}

{{/* Where the Secrets of apiKeys and tls are mounted (outside the ConfigMap's read-only mount). */}}
{{- define "genai-collector.secretsPath" -}}
/var/run/secrets/genai-collector
{{- end }}

{{/* The first apiKeys entry with the admin scope (the ServiceMonitor scrapes with it), as YAML, or "". */}}
{{- define "genai-collector.adminKey" -}}
{{- $found := "" }}
{{- range .Values.apiKeys }}
{{- if and (not $found) (has "admin" .scopes) }}{{ $found = toYaml . }}{{ end }}
{{- end }}
{{- $found }}
{{- end }}

{{/* The daemon's config file: the config value, plus the key files and TLS files the chart mounts. */}}
{{- define "genai-collector.configFile" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- $secrets := include "genai-collector.secretsPath" . }}
{{- if .Values.apiKeys }}
{{- $keys := list }}
{{- range .Values.apiKeys }}
{{- $keys = append $keys (dict "name" .name "key_file" (printf "%s/keys/%s/key" $secrets .name) "scopes" .scopes) }}
{{- end }}
{{- $auth := deepCopy (get $config "auth" | default dict) }}
{{- $_ := set $auth "api_keys" $keys }}
{{- $_ := set $config "auth" $auth }}
{{- end }}
{{- if .Values.tls.existingSecret }}
{{- $tls := dict "cert_file" (printf "%s/tls/tls.crt" $secrets) "key_file" (printf "%s/tls/tls.key" $secrets) }}
{{- if .Values.tls.clientAuth }}
{{- $_ := set $tls "otlp_grpc" (dict "client_ca_file" (printf "%s/tls/ca.crt" $secrets)) }}
{{- $_ := set $tls "otlp_http" (dict "client_ca_file" (printf "%s/tls/ca.crt" $secrets)) }}
{{- end }}
{{- $_ := set $config "tls" $tls }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* "true" when redaction is on and a detector or rule hashes, which needs redaction.hash_key. */}}
{{- define "genai-collector.hashModeUsed" -}}
{{- $redaction := get (.Values.config | default dict) "redaction" | default dict }}
{{- $modes := list (get $redaction "mode" | default "mask") }}
{{- range $detector, $mode := (get $redaction "detectors" | default dict) }}
{{- $modes = append $modes $mode }}
{{- end }}
{{- range (get $redaction "rules" | default list) }}
{{- $modes = append $modes (get . "mode" | default "mask") }}
{{- end }}
{{- if and (ne (toString (get $redaction "enabled")) "false") (has "hash" $modes) }}true{{ end }}
{{- end }}

{{/* Fails the render, with what to change, on a combination the collector cannot run with. */}}
{{- define "genai-collector.validate" -}}
{{- $postgres := eq .Values.storage.type "postgres" }}
{{- if and (not $postgres) (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "replicaCount is %d, but storage.type sqlite has a single writer: set replicaCount to 1 (one collector pod writes the SQLite database on its own volume), or use storage.type postgres to run several" (int .Values.replicaCount)) }}
{{- end }}
{{- if and $postgres (not .Values.storage.postgres.existingSecret) }}
{{- fail (printf "storage.type postgres needs storage.postgres.existingSecret: a Secret whose key %s holds the database URL (postgresql://user@host:5432/dbname?sslmode=require)" .Values.storage.postgres.secretKey) }}
{{- end }}
{{- if and (not $postgres) .Values.storage.postgres.existingSecret }}
{{- fail "storage.postgres.existingSecret is set but storage.type is sqlite: set storage.type to postgres to use the database" }}
{{- end }}
{{- if and $postgres .Values.persistence.existingClaim }}
{{- fail "persistence.existingClaim is set but storage.type postgres keeps no data in the pod: remove the claim" }}
{{- end }}
{{- if and $postgres (eq .Values.updateStrategy.type "OnDelete") }}
{{- fail "updateStrategy.type OnDelete is a StatefulSet's; with storage.type postgres (a Deployment) use RollingUpdate or Recreate" }}
{{- end }}
{{- if and (not $postgres) (eq .Values.updateStrategy.type "Recreate") }}
{{- fail "updateStrategy.type Recreate is a Deployment's; with storage.type sqlite (a StatefulSet) use RollingUpdate or OnDelete" }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- if not $postgres }}
{{- fail "autoscaling.enabled needs storage.type postgres: SQLite has a single writer, so its one pod cannot scale out" }}
{{- end }}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- fail (printf "autoscaling.minReplicas (%d) is above autoscaling.maxReplicas (%d)" (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- end }}
{{- if not (or .Values.autoscaling.targetCPUUtilizationPercentage .Values.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail "autoscaling.enabled needs a target: autoscaling.targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- end }}
{{- if and $postgres .Values.networkPolicy.enabled (not .Values.networkPolicy.egress) }}
{{- fail "networkPolicy.enabled denies all egress unless networkPolicy.egress allows some, and with storage.type postgres the collector must reach its database: add egress rules to PostgreSQL's port (and to DNS, port 53, when the URL names a host)" }}
{{- end }}
{{- if and .Values.persistence.existingClaim (not .Values.persistence.enabled) }}
{{- fail "persistence.existingClaim is set but persistence.enabled is false: enable persistence to use the claim" }}
{{- end }}
{{- if include "genai-collector.hashModeUsed" . }}
{{- $fromEnv := false }}
{{- range .Values.extraEnv }}
{{- if eq .name "GENAI_COLLECTOR_REDACTION__HASH_KEY" }}{{ $fromEnv = true }}{{ end }}
{{- end }}
{{- if not (or .Values.redactionHashKey.existingSecret $fromEnv .Values.extraEnvFrom) }}
{{- fail "config.redaction uses the hash mode, which needs a key: set redactionHashKey.existingSecret to a Secret holding it (key redactionHashKey.secretKey)" }}
{{- end }}
{{- end }}
{{- $auth := get (.Values.config | default dict) "auth" | default dict }}
{{- if and (get $auth "protect_metrics") (not (include "genai-collector.adminKey" .)) }}
{{- fail "config.auth.protect_metrics needs an apiKeys entry with the admin scope, or nothing could scrape /metrics" }}
{{- end }}
{{- $names := list }}
{{- range .Values.apiKeys }}
{{- if has .name $names }}{{ fail (printf "apiKeys has the name %s twice; names must be unique" .name) }}{{ end }}
{{- $names = append $names .name }}
{{- end }}
{{- $readKey := false }}
{{- range .Values.apiKeys }}{{ if has "read" .scopes }}{{ $readKey = true }}{{ end }}{{ end }}
{{- if and .Values.queryApi.expose (not $readKey) (not (get $auth "allow_unauthenticated_reads")) }}
{{- fail "queryApi.expose serves every prompt and completion to the cluster: add an apiKeys entry with the read scope, or set config.auth.allow_unauthenticated_reads: true" }}
{{- end }}
{{- if and .Values.tls.clientAuth (not .Values.tls.existingSecret) }}
{{- fail "tls.clientAuth needs tls.existingSecret (its ca.crt signs the clients' certificates)" }}
{{- end }}
{{- end }}

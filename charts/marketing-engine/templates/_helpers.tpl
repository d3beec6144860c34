{{/*
Names and labels. Every object carries the standard app.kubernetes.io/* labels from here.
*/}}

{{- define "me.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name prefix: the release name when it already contains the chart name (marketing-engine). */}}
{{- define "me.fullname" -}}
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

{{/* "<fullname>-<component>", e.g. marketing-engine-redis. Call with (list $ "redis"). */}}
{{- define "me.component.fullname" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "me.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "me.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of a component. Call with (list $ "redis"). */}}
{{- define "me.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "me.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* All standard labels of a component. Call with (list $ "redis"). */}}
{{- define "me.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "me.chart" $root }}
{{ include "me.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: marketing-engine
app.kubernetes.io/managed-by: {{ default $root.Release.Service $root.Values.managedBy }}
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* "repository:tag" of images.<key>. Call with (list $ "app"). */}}
{{- define "me.image" -}}
{{- $img := index (index . 0).Values.images (index . 1) }}
{{- printf "%s:%s" $img.repository $img.tag }}
{{- end }}

{{/* The Kafka/Schema Registry/REST endpoints every client component reads (common.settings names). */}}
{{- define "me.env.kafka" -}}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrapServers | quote }}
- name: SCHEMA_REGISTRY_URL
  value: {{ .Values.kafka.schemaRegistryUrl | quote }}
{{- end }}

{{- define "me.env.logging" -}}
- name: LOG_LEVEL
  value: {{ .Values.logging.level | quote }}
- name: LOG_JSON
  value: {{ .Values.logging.json | quote }}
{{- end }}

{{- define "me.redis.fullname" -}}{{ include "me.component.fullname" (list . "redis") }}{{- end }}
{{- define "me.ksqldb.fullname" -}}{{ include "me.component.fullname" (list . "ksqldb") }}{{- end }}
{{- define "me.web.fullname" -}}{{ include "me.component.fullname" (list . "web") }}{{- end }}
{{- define "me.operator.fullname" -}}{{ include "me.component.fullname" (list . "ksql-operator") }}{{- end }}
{{- define "me.delta.claimName" -}}{{ include "me.component.fullname" (list . "delta") }}{{- end }}

{{- define "me.ksqldb.url" -}}
{{- printf "http://%s:%d" (include "me.ksqldb.fullname" .) (int .Values.ksqldb.port) }}
{{- end }}

{{- define "me.redis.url" -}}
{{- printf "redis://%s:6379/0" (include "me.redis.fullname" .) }}
{{- end }}

{{/* Secret + key holding the Redis password. */}}
{{- define "me.redis.secretName" -}}
{{- default (printf "%s-auth" (include "me.redis.fullname" .)) .Values.redis.auth.existingSecret }}
{{- end }}
{{- define "me.redis.secretKey" -}}
{{- if .Values.redis.auth.existingSecret }}{{ .Values.redis.auth.existingSecretKey }}{{ else }}password{{ end }}
{{- end }}

{{/* Secret + key holding the web UI's SECRET_KEY. */}}
{{- define "me.web.secretName" -}}
{{- default (printf "%s-secret" (include "me.web.fullname" .)) .Values.web.existingSecret }}
{{- end }}
{{- define "me.web.secretKey" -}}
{{- if .Values.web.existingSecret }}{{ .Values.web.existingSecretKey }}{{ else }}secret-key{{ end }}
{{- end }}

{{/*
A generated secret value that survives upgrades: the value given, else the one already stored in the
live Secret (lookup), else a new random one. Call with (dict "root" $ "secret" name "key" key "given" value "length" n).
*/}}
{{- define "me.stableSecret" -}}
{{- if .given }}
{{- .given }}
{{- else }}
{{- $live := lookup "v1" "Secret" .root.Release.Namespace .secret }}
{{- if and $live $live.data (hasKey $live.data .key) }}
{{- index $live.data .key | b64dec }}
{{- else }}
{{- randAlphaNum (int .length) }}
{{- end }}
{{- end }}
{{- end }}

{{/* "key: value" label of the operator's ConfigMap selector (key=value or key). */}}
{{- define "me.ksql.configMapLabel" -}}
{{- $parts := splitn "=" 2 .Values.operator.configMapLabel }}
{{ $parts._0 }}: {{ default "true" $parts._1 | quote }}
{{- end }}

{{/* "name:partitions name:partitions ..." of the topics the topics Job creates. */}}
{{- define "me.topics.specs" -}}
{{- range $i, $t := .Values.topics.items }}{{ if $i }} {{ end }}{{ $t.name }}:{{ $t.partitions }}
{{- range $k, $v := ($t.config | default dict) }}:{{ $k }}={{ $v }}{{ end }}{{ end }}
{{- end }}

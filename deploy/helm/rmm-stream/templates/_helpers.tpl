{{/*
Names, labels and small shared pieces of the rmm-stream chart.
*/}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "rmm-stream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: <release>-<chart> unless the release name already
contains the chart name. Truncated to 63 characters (DNS label limit).
*/}}
{{- define "rmm-stream.fullname" -}}
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

{{/* <chart>-<version>, for the helm.sh/chart label. */}}
{{- define "rmm-stream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the pods; never change them after the first install. */}}
{{- define "rmm-stream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rmm-stream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object of the chart. */}}
{{- define "rmm-stream.labels" -}}
helm.sh/chart: {{ include "rmm-stream.chart" . }}
{{ include "rmm-stream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: detector
app.kubernetes.io/part-of: rmm-stream
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* ServiceAccount the pods run as. */}}
{{- define "rmm-stream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rmm-stream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Container image reference: repository:tag[@digest], tag defaulting to appVersion. */}}
{{- define "rmm-stream.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Where the chart mounts the service's files inside the container. */}}
{{- define "rmm-stream.configDir" -}}/etc/rmm-stream{{- end }}
{{- define "rmm-stream.configPath" -}}/etc/rmm-stream/config.yaml{{- end }}
{{- define "rmm-stream.rulesDir" -}}/etc/rmm-stream/rules/{{- end }}
{{- define "rmm-stream.exclusionsPath" -}}/etc/rmm-stream/exclusions.yaml{{- end }}

{{/* Names of the three ConfigMaps (chart-made or existing). */}}
{{- define "rmm-stream.settingsConfigMap" -}}
{{- default (printf "%s-config" (include "rmm-stream.fullname" .)) .Values.config.existingConfigMap }}
{{- end }}
{{- define "rmm-stream.rulesConfigMap" -}}
{{- default (printf "%s-rules" (include "rmm-stream.fullname" .)) .Values.rules.existingConfigMap }}
{{- end }}
{{- define "rmm-stream.exclusionsConfigMap" -}}
{{- default (printf "%s-exclusions" (include "rmm-stream.fullname" .)) .Values.exclusions.existingConfigMap }}
{{- end }}

{{/* "true" when rules are mounted (from values or an existing ConfigMap). */}}
{{- define "rmm-stream.hasRules" -}}
{{- if or .Values.rules.existingConfigMap .Values.rules.files }}true{{- end }}
{{- end }}

{{/*
Keys of the rules ConfigMap projected into /etc/rmm-stream/rules/: the
files given in values, or rules.existingConfigMapKeys for an existing one.
*/}}
{{- define "rmm-stream.ruleKeys" -}}
{{- if .Values.rules.existingConfigMap }}
{{- toJson .Values.rules.existingConfigMapKeys }}
{{- else }}
{{- toJson (keys .Values.rules.files | sortAlpha) }}
{{- end }}
{{- end }}

{{/* Keys of the exclusions ConfigMap projected as list files under lists/. */}}
{{- define "rmm-stream.exclusionListKeys" -}}
{{- if .Values.exclusions.existingConfigMap }}
{{- toJson .Values.exclusions.existingConfigMapListKeys }}
{{- else }}
{{- toJson (keys .Values.exclusions.listFiles | sortAlpha) }}
{{- end }}
{{- end }}

{{/*
The service's config.yaml: values under `config.settings` (the application's
own snake_case keys) with empty ones ("", null, []) left out so that the
application default applies, plus the keys the chart owns because it decides
the paths: rules and exclusions.
*/}}
{{- define "rmm-stream.settings" -}}
{{- $s := dict }}
{{- range $k, $v := .Values.config.settings }}
{{- if not (or (kindIs "invalid" $v) (and (kindIs "string" $v) (eq $v "")) (and (kindIs "slice" $v) (eq (len $v) 0))) }}
{{- $_ := set $s $k $v }}
{{- end }}
{{- end }}
{{- if include "rmm-stream.hasRules" . }}
{{- $_ := set $s "rules" (include "rmm-stream.rulesDir" .) }}
{{- else if not (hasKey $s "rules") }}
{{- $_ := set $s "rules" .Values.rules.builtinDir }}
{{- end }}
{{- if .Values.exclusions.enabled }}
{{- $_ := set $s "exclusions" (include "rmm-stream.exclusionsPath" .) }}
{{- end }}
{{- toYaml $s }}
{{- end }}

{{/* The HTTP port (metrics, probes): config.settings.http_port. */}}
{{- define "rmm-stream.httpPort" -}}
{{- default 8080 .Values.config.settings.http_port | int }}
{{- end }}

{{/*
Effective autoscaling ceiling: the most replicas the chart can run.
*/}}
{{- define "rmm-stream.maxReplicas" -}}
{{- if .Values.keda.enabled }}{{ .Values.keda.maxReplicaCount }}
{{- else if .Values.autoscaling.enabled }}{{ .Values.autoscaling.maxReplicas }}
{{- else }}{{ .Values.replicaCount }}
{{- end }}
{{- end }}

{{/*
Prometheus label matchers that pick this release's series in alert rules,
the KEDA prometheus trigger and nowhere else.
*/}}
{{- define "rmm-stream.promSelector" -}}
{{- if .Values.metrics.selector }}
{{- .Values.metrics.selector }}
{{- else }}
{{- printf "namespace=%q, service=%q" .Release.Namespace (include "rmm-stream.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Checks that stop a bad combination of values before anything is applied.
Included from the Deployment, which every render contains.
*/}}
{{- define "rmm-stream.validate" -}}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are mutually exclusive: a KEDA ScaledObject creates and owns its own HorizontalPodAutoscaler. Enable only one of them." }}
{{- end }}
{{- $secretKeys := list "sasl_password" "eventhub_connection_string" "redis_password" "password" }}
{{- range $k := $secretKeys }}
{{- if hasKey $.Values.config.settings $k }}
{{- fail (printf "config.settings.%s: secret values do not belong in values (they would land in a ConfigMap). Put it in a Secret and reference it under secrets.* instead." $k) }}
{{- end }}
{{- end }}
{{- $store := default "" .Values.config.settings.store }}
{{- if regexMatch "^[a-z+]+://[^/@]*:[^/@]+@" $store }}
{{- fail "config.settings.store: the Redis URL contains a password. Remove it from the URL and set secrets.redisPassword (env RMM_STREAM_REDIS_PASSWORD) instead." }}
{{- end }}
{{- if and .Values.rules.existingConfigMap (not .Values.rules.existingConfigMapKeys) }}
{{- fail "rules.existingConfigMap is set but rules.existingConfigMapKeys is empty: list the keys (rule file names) to mount under /etc/rmm-stream/rules/." }}
{{- end }}
{{- if hasKey .Values.exclusions.listFiles .Values.exclusions.key }}
{{- fail (printf "exclusions.listFiles: %q is the key of the exclusions file itself (exclusions.key); rename the list file." .Values.exclusions.key) }}
{{- end }}
{{- if and .Values.rules.existingConfigMap .Values.rules.files }}
{{- fail "rules.files and rules.existingConfigMap are mutually exclusive: give the rules inline or name an existing ConfigMap, not both." }}
{{- end }}
{{- if and .Values.keda.enabled (eq .Values.keda.trigger.type "kafka") (not .Values.keda.trigger.kafka.authenticationRef) (hasPrefix "SASL" (default "" .Values.config.settings.security_protocol)) }}
{{- fail "keda.trigger.type=kafka with a SASL security_protocol needs keda.trigger.kafka.authenticationRef (a TriggerAuthentication holding the SASL credentials)." }}
{{- end }}
{{- end }}

{{/*
One env entry taking a credential from a Secret key. Rendered only when both
a Secret name (the credential's own or secrets.existingSecret) and a key are
set. Arguments: dict "root" $ "env" NAME "ref" .Values.secrets.<credential>.
*/}}
{{- define "rmm-stream.secretEnv" -}}
{{- $secret := default .root.Values.secrets.existingSecret .ref.secretName }}
{{- if and $secret .ref.key }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret | quote }}
      key: {{ .ref.key | quote }}
      optional: {{ .ref.optional }}
{{- end }}
{{- end }}

{{/* The credential env vars (possibly none). */}}
{{- define "rmm-stream.credentialEnv" -}}
{{- include "rmm-stream.secretEnv" (dict "root" . "env" "RMM_STREAM_SASL_PASSWORD" "ref" .Values.secrets.saslPassword) }}
{{- include "rmm-stream.secretEnv" (dict "root" . "env" "RMM_STREAM_EVENTHUB_CONNECTION_STRING" "ref" .Values.secrets.eventhubConnectionString) }}
{{- include "rmm-stream.secretEnv" (dict "root" . "env" "RMM_STREAM_REDIS_PASSWORD" "ref" .Values.secrets.redisPassword) }}
{{- end }}
